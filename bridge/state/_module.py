"""Modules: objects that own variables and sub-modules as attributes."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional, Sequence

from bridge.state._collection import VarCollection
from bridge.state._repr import arguments_repr, class_path, function_repr
from bridge.state._variables import BaseVar

__all__ = ["Module", "ModuleList", "Function", "ForceArgs", "local_kwargs", "module_vars",
           "override_args_kwargs"]


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
        # Each variable remembers where it was first attached, for error messages (a
        # variable in a ModuleList attribute is named by its position).
        if isinstance(value, BaseVar):
            _label(value, f"({type(self).__name__}).{name}")
        elif isinstance(value, ModuleList):
            for i, item in enumerate(value):
                if isinstance(item, BaseVar):
                    _label(item, f"({type(self).__name__}).{name}[{i}]")
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


def _label(var: BaseVar, label: str) -> None:
    storage = var._storage()
    if storage._label is None:
        storage._label = label


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

    Its variables are named after the function: ``{loss}(Linear).w`` for a function
    ``loss``. A callable without a ``__name__`` (a ``functools.partial``) adds no prefix.
    ``inspect.signature`` of a ``Function`` is the wrapped function's.

    Example::

        @bridge.Function.with_vars(model.vars())
        def loss(x, y):
            return ((model(x) - y) ** 2).mean()

        loss.vars()   # the model's variables, named '{loss}(Linear).w', ...
    """

    def __init__(self, f: Callable, vc: VarCollection):
        self.__wrapped__ = f
        name = getattr(f, "__name__", None)
        prefix = f"{{{name}}}" if name else ""
        self.vc = VarCollection((prefix + k, v) for k, v in vc.items())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def vars(self, scope: str = "") -> VarCollection:
        """The given collection, its names prefixed with ``scope``."""
        return VarCollection((scope + k, v) for k, v in self.vc.items())

    @staticmethod
    def with_vars(vc: VarCollection) -> Callable[[Callable], Function]:
        """Decorator: ``@Function.with_vars(vc)`` turns a function into a ``Function``."""
        return lambda f: Function(f, vc)

    @staticmethod
    def auto_vars(f: Callable) -> Function:
        """Decorator: a ``Function`` of ``f`` and the variables its source refers to.

        The variables are found by reading ``f``'s source (``find_used_variables``): the
        modules and variables it names through globals, closures and attribute chains,
        named after the expression (``{loss}model.(Linear).w``). Variables reached in
        other ways (through arguments, subscripts, or functions it calls) are not found;
        use ``with_vars`` for those.

        Example::

            @bridge.Function.auto_vars
            def loss(x, y):
                return ((model(x) - y) ** 2).mean()
        """
        from bridge.state._find_used import find_used_variables

        return Function(f, find_used_variables(f))

    def __repr__(self) -> str:
        return f"{class_path(self)}(f={function_repr(self.__wrapped__)})"


class _Any:
    """``ForceArgs.ANY``: undo a forced argument whatever its value."""

    def __repr__(self) -> str:
        return "ForceArgs.ANY"


class ForceArgs(Module):
    """Call a module with some arguments forced to fixed values.

    A forced argument replaces the caller's, whether the caller passed it by keyword or
    by position (the wrapped module's signature decides). Its variables are the
    module's, with the same names, and ``inspect.signature`` is the module's.

    Example::

        eval_model = bridge.ForceArgs(model, training=False)
        eval_model(x, True)          # runs model(x, False)
        bridge.ForceArgs.undo(eval_model, training=bridge.ForceArgs.ANY)
    """

    ANY = _Any()

    def __init__(self, module: Callable, **kwargs: Any):
        self.__wrapped__ = module
        self.forced_kwargs = kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = override_args_kwargs(self.__wrapped__, args, kwargs, self.forced_kwargs)
        return self.__wrapped__(*args, **kwargs)

    def vars(self, scope: str = "") -> VarCollection:
        """The wrapped module's variables, with the same names (the wrapper is invisible)."""
        return self.__wrapped__.vars(scope=scope)

    @staticmethod
    def undo(module: Module, **kwargs: Any) -> None:
        """Remove forced arguments from ``module`` and every module below it, in place.

        Args:
          module: the root; a ``ForceArgs`` root keeps its wrapper but loses its arguments.
          **kwargs: which to remove: ``name=value`` removes ``name`` where it is forced to
            ``value``; ``name=ForceArgs.ANY`` removes it whatever its value. With none
            given, every forced argument is removed.

        A ``ForceArgs`` left with no forced argument is replaced by the module it wraps.
        """
        def keep(name: str, value: Any) -> bool:
            if name not in kwargs:
                return False if not kwargs else True
            wanted = kwargs[name]
            return not (wanted is ForceArgs.ANY or wanted is value or _equal(wanted, value))

        def visit(node: Any) -> Any:
            if isinstance(node, ForceArgs):
                node.forced_kwargs = {k: v for k, v in node.forced_kwargs.items() if keep(k, v)}
                node.__wrapped__ = visit(node.__wrapped__)
                return node if node.forced_kwargs else node.__wrapped__
            if isinstance(node, ModuleList):
                for i, child in enumerate(node):
                    if isinstance(child, Module):
                        list.__setitem__(node, i, visit(child))
            elif isinstance(node, Module):
                for name, child in list(node.__dict__.items()):
                    if isinstance(child, Module):
                        object.__setattr__(node, name, visit(child))
            return node

        if isinstance(module, ForceArgs):
            module.forced_kwargs = {k: v for k, v in module.forced_kwargs.items()
                                    if keep(k, v)}
            module.__wrapped__ = visit(module.__wrapped__)
        else:
            visit(module)

    def __repr__(self) -> str:
        module = function_repr(self.__wrapped__)
        return f"{class_path(self)}(module={module}, {arguments_repr(**self.forced_kwargs)})"


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` for forced values, which may be arrays (then: same shape and values)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays of several elements, or incomparable types
        return False


def override_args_kwargs(f: Callable, args: Sequence[Any], kwargs: dict,
                         new_kwargs: dict) -> tuple[list, dict]:
    """Replace some arguments of a call to ``f``, wherever they were passed.

    A name in ``new_kwargs`` that ``f``'s signature binds to one of the given positional
    ``args`` replaces that positional value; every other entry of ``new_kwargs`` is merged
    into ``kwargs`` (overriding a keyword of the same name). ``f`` is not called.

    Args:
      f: the function whose signature decides where each argument goes.
      args: the positional arguments of the call.
      kwargs: the keyword arguments of the call.
      new_kwargs: the values to force, by parameter name.

    Returns:
      ``(args, kwargs)``: a new list and a new dict; the inputs are not modified.

    Example::

        def f(x, training=True): ...
        override_args_kwargs(f, [x, True], {}, {'training': False})   # ([x, False], {})
        override_args_kwargs(f, [x], {}, {'training': False})         # ([x], {'training': False})
    """
    args = list(args)
    remaining = dict(new_kwargs)
    if remaining and args:
        try:
            parameters = inspect.signature(f).parameters.values()
        except (TypeError, ValueError):  # no signature: everything goes by keyword
            parameters = []
        for index, parameter in enumerate(parameters):
            if index >= len(args) or parameter.kind not in _POSITIONAL:
                break
            if parameter.name in remaining:
                args[index] = remaining.pop(parameter.name)
    return args, {**kwargs, **remaining}


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


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
