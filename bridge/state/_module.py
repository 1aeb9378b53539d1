"""Modules: objects that own variables and sub-modules as attributes."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional

from bridge.state._collection import VarCollection
from bridge.state._variables import BaseVar

__all__ = ["Module", "ModuleList", "Function", "ForceArgs", "local_kwargs", "module_vars"]


class Module:
    """Base class of object-style models.

    Assign variables and sub-modules as attributes; ``vars()`` collects them, named after
    the path that reaches them::

        class MLP(bridge.Module):
            def __init__(self):
                self.l1 = bridge.nn.Linear(2, 3)
                self.l2 = bridge.nn.Linear(3, 1)

            def __call__(self, x):
                return self.l2(jax.nn.relu(self.l1(x)))

        MLP().vars().keys()   # '(MLP).l1(Linear).b', '(MLP).l1(Linear).w', ...

    Subclasses need not call ``super().__init__()``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, BaseVar):
            storage = value._storage()
            if storage._label is None:  # remembered for error messages
                storage._label = f"({type(self).__name__}).{name}"
        object.__setattr__(self, name, value)

    def vars(self, scope: str = "") -> VarCollection:
        """All variables reachable from this module's attributes, with their names.

        Args:
          scope: a prefix for every name.

        Returns:
          A ``VarCollection`` mapping ``scope + '(Class).attr...'`` to variables, in
          attribute order.
        """
        vc = VarCollection()
        scope += f"({type(self).__name__})."
        for name, value in self.__dict__.items():
            if isinstance(value, BaseVar):
                vc.update({scope + name: value})
            elif isinstance(value, Module):
                # A wrapped module (Jit, Vectorize, ...) continues this module's scope.
                sub_scope = scope[:-1] if name == "__wrapped__" else scope + name
                vc.update(value.vars(scope=sub_scope))
        return vc

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ModuleList(Module, list):
    """A list of modules (and/or variables) whose variables are named by position.

    Example: ``bridge.ModuleList([Linear(2, 3), Linear(3, 4)]).vars()`` has names
    ``(ModuleList)[0](Linear).w`` and so on.
    """

    def __init__(self, iterable: Iterable = ()):
        list.__init__(self, iterable)

    def vars(self, scope: str = "") -> VarCollection:
        vc = VarCollection()
        scope += f"({type(self).__name__})"
        for index, value in enumerate(self):
            if isinstance(value, BaseVar):
                vc.update({f"{scope}[{index}]": value})
            elif isinstance(value, Module):
                vc.update(value.vars(scope=f"{scope}[{index}]"))
        return vc

    def __getitem__(self, key):  # slices stay ModuleLists
        value = list.__getitem__(self, key)
        return type(self)(value) if isinstance(key, slice) else value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list.__repr__(self)})"


class Function(Module):
    """A plain function together with the variables it uses.

    Example::

        @bridge.Function.with_vars(model.vars())
        def loss(x, y):
            return ((model(x) - y) ** 2).mean()

        loss.vars()   # the model's variables, named '{loss}(Linear).w', ...
    """

    def __init__(self, f: Callable, vc: VarCollection):
        self.__wrapped__ = f
        self.vc = vc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def vars(self, scope: str = "") -> VarCollection:
        """The given collection, names prefixed with ``scope + '{function name}'``."""
        name = getattr(self.__wrapped__, "__name__", type(self.__wrapped__).__name__)
        prefix = f"{scope}{{{name}}}"
        return VarCollection((prefix + name, v) for name, v in self.vc.items())

    @staticmethod
    def with_vars(vc: VarCollection) -> Callable[[Callable], Function]:
        """Decorator: ``@Function.with_vars(vc)`` turns a function into a ``Function``."""
        return lambda f: Function(f, vc)

    def __repr__(self) -> str:
        return f"Function({getattr(self.__wrapped__, '__qualname__', self.__wrapped__)!r})"


class ForceArgs(Module):
    """Call a module with some keyword arguments forced to fixed values.

    Example: ``eval_model = bridge.ForceArgs(model, training=False)``. Its variables are
    the model's, with the same names, as in Objax.
    """

    def __init__(self, module: Module, **kwargs: Any):
        self.__wrapped__ = module
        self.forced_kwargs = kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **{**kwargs, **self.forced_kwargs})

    def vars(self, scope: str = "") -> VarCollection:
        """The wrapped module's variables, with the same names (the wrapper is invisible)."""
        return self.__wrapped__.vars(scope=scope)

    @staticmethod
    def undo(module: Module, recursive: bool = True, **kwargs: Any) -> None:
        """Remove ``ForceArgs`` wrappers below ``module``, in place.

        With keyword names given, only those forced arguments are removed (a wrapper left
        with none is removed entirely); otherwise every wrapper is removed.
        """
        def strip(child: Any) -> Any:
            if isinstance(child, ForceArgs):
                if kwargs:
                    child.forced_kwargs = {k: v for k, v in child.forced_kwargs.items()
                                           if k not in kwargs}
                if not kwargs or not child.forced_kwargs:
                    return strip(child.__wrapped__)
            if recursive and isinstance(child, Module):
                ForceArgs.undo(child, recursive=True, **kwargs)
            return child

        if isinstance(module, ModuleList):
            for i, child in enumerate(module):
                list.__setitem__(module, i, strip(child))
        for name, child in list(module.__dict__.items()):
            if isinstance(child, Module):
                object.__setattr__(module, name, strip(child))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.forced_kwargs.items())
        return f"ForceArgs({self.__wrapped__!r}, {args})"


def local_kwargs(kwargs: dict, f: Callable, signature: Optional[inspect.Signature] = None) -> dict:
    """The subset of ``kwargs`` that ``f`` accepts (all of them if it takes ``**kwargs``)."""
    if not kwargs:
        return kwargs
    try:
        params = (signature or inspect.signature(f)).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def module_vars(func: Any, needed_by: Optional[str] = None) -> VarCollection:
    """The variables of ``func`` when it is a module or a method of one.

    For anything else: an empty collection, or, when ``needed_by`` names the caller, a
    ``ValueError`` asking for the collection explicitly.
    """
    if isinstance(func, Module):
        return func.vars()
    owner = getattr(func, "__self__", None)
    if isinstance(owner, Module):
        return owner.vars()
    if needed_by is not None:
        raise ValueError(f"{needed_by} of a plain function needs the VarCollection it uses: "
                         f"{needed_by}(f, vc=model.vars()).")
    return VarCollection()
