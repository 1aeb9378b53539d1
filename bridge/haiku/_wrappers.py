"""Haiku models as object modules, and object modules as Haiku transformed functions.

``HaikuModule(transformed, params, state=None)``
    an ``hk.Transformed`` / ``hk.TransformedWithState`` with its params (and state) as a
    ``bridge.Module``: params become ``TrainVar``s, state ``StateVar``s.
``to_haiku(module)``
    an object module as an ``hk.TransformedWithState`` whose ``init`` returns the module's
    current weights and whose ``apply(params, state, rng, *args)`` runs it purely.

As for the Flax wrappers, names and paths are worked out once, in the constructor; a call
lists the variables' values, rebuilds the params/state dicts with stored tree structures,
calls ``apply`` and writes back the state leaves that changed. Inside ``bridge.Jit`` this
all happens at trace time. The changed state and the next rng key are written together by
one ``commit``: a call that raises (a state value of the wrong shape or dtype, state entries
the wrapper does not hold) leaves every variable, the rng included, as it was.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional

import haiku as hk
import jax

from bridge.interop._tree_module import TreeModule, path_name
from bridge.pure import functionalize
from bridge.state import BaseVar, RandomState, StateVar, TrainVar, VarCollection
from bridge.state._access import read, split_key, storages
from bridge.state._module import module_vars

__all__ = ["HaikuModule", "to_haiku"]

def _takes_rng(apply: Callable, position: int) -> bool:
    """Whether ``apply`` has an ``rng`` parameter (``hk.without_apply_rng`` removes it)."""
    try:
        params = list(inspect.signature(apply).parameters.values())
    except (TypeError, ValueError):
        return True
    return len(params) > position and params[position].name == "rng"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class HaikuModule(TreeModule):
    """A Haiku transformed function with its params and state, as an object module.

    Args:
      transformed: an ``hk.Transformed`` or ``hk.TransformedWithState`` (with or without
        ``hk.without_apply_rng``).
      params: its params, as ``transformed.init`` returns them (kept, not copied).
      state: its state (``TransformedWithState`` only).
      seed: seed of the ``RandomState`` that the ``rng`` argument of ``apply`` comes from.
      needs_rng: whether each call passes ``apply`` a fresh key as its ``rng``. ``None``
        (the default): found from the model's structure. An ``apply`` without an ``rng``
        argument (``hk.without_apply_rng``) gets none; otherwise the first call traces
        ``apply`` once more with a placeholder key (``jax.make_jaxpr``, at trace time
        inside ``bridge.Jit``) and looks whether the key is used (``hk.next_rng_key``,
        ``hk.dropout``). A model that does not use it gets ``rng=None``, so a deterministic
        model pays nothing per call; one that uses it gets a key on this and every later
        call. Calls with other keyword arguments (``is_training=True`` after an eval call)
        are looked at again until one uses the key. ``False``: always ``rng=None``
        (``m.rng`` never changes). ``True``: always a key (an ``apply`` without an ``rng``
        argument is refused).

    Variables (``vars()``), in Haiku's sorted order, then the random state:
      ``(HaikuModule).params/<module name>/<leaf>`` (``TrainVar``), e.g.
      ``(HaikuModule).params/mlp/~/linear_0/w``; ``(HaikuModule).state/<module name>/<leaf>``
      (``StateVar``), e.g. ``(HaikuModule).state/batch_norm/~/mean_ema/average``; then
      ``(HaikuModule).rng`` (a ``RandomState``).

    Calling ``m(*args, **kwargs)`` runs ``transformed.apply(params, [state,] rng, *args,
    **kwargs)`` and stores the returned state; keyword arguments (``is_training=True``)
    pass through. A call that passes a key (see ``needs_rng``) draws it from ``m.rng`` as
    ``new_state, rng = jax.random.split(m.rng)``, ``new_state`` becoming ``m.rng``: keys
    change per call, and per example inside ``bridge.Vectorize``. A call that raises (a
    state value of the wrong shape or dtype) changes no variable, ``m.rng`` included.

    Example::

        f = hk.transform_with_state(lambda x, is_training: hk.nets.ResNet18(10)(x, is_training))
        params, state = f.init(key, x, is_training=True)
        m = bridge.haiku.HaikuModule(f, params, state)
        logits = m(x, is_training=True)          # batch-norm statistics updated in m
        m.params, m.state                        # current Haiku dicts
    """

    def __init__(self, transformed: Any, params: Mapping, state: Optional[Mapping] = None,
                 *, seed: int = 0, needs_rng: Optional[bool] = None):
        if not hasattr(transformed, "apply") or not hasattr(transformed, "init"):
            raise TypeError("HaikuModule takes an hk.Transformed or hk.TransformedWithState, "
                            f"got {type(transformed).__name__}.")
        self._with_state = isinstance(transformed, hk.TransformedWithState)
        if state and not self._with_state:
            raise TypeError("HaikuModule: state given for an hk.Transformed without state; "
                            "use hk.transform_with_state.")
        self.transformed = transformed
        self._takes_rng = _takes_rng(transformed.apply, 2 if self._with_state else 1)
        if needs_rng and not self._takes_rng:
            raise TypeError("HaikuModule: needs_rng=True, but transformed.apply takes no rng "
                            "(it went through hk.without_apply_rng).")
        self._needs_rng = bool(needs_rng)
        # needs_rng=None: calls whose keyword arguments were looked at and drew no key
        self._looked_at: Optional[set] = set() if needs_rng is None and self._takes_rng \
            else None
        trees = {"params": dict(params), "state": dict(state or {})}
        named: list[tuple[str, BaseVar]] = []
        self._defs = {}
        for part, kind in (("params", TrainVar), ("state", StateVar)):
            flat, self._defs[part] = jax.tree_util.tree_flatten_with_path(trees[part])
            named += [(f"{part}/{path_name(path)}", kind(leaf)) for path, leaf in flat]
        self._set_leaves(named)
        self._n_params = self._defs["params"].num_leaves
        self.rng = RandomState(seed)

    @property
    def params(self) -> dict:
        """The current Haiku params (the variables' own arrays)."""
        return self._defs["params"].unflatten([v.value for v in self._leaves[:self._n_params]])

    @property
    def state(self) -> dict:
        """The current Haiku state (the variables' own arrays); ``{}`` without state."""
        return self._defs["state"].unflatten([v.value for v in self._leaves[self._n_params:]])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``transformed.apply(...)``; see the class docstring."""
        n = self._n_params
        values = read(self._leaves)
        head = [self._defs["params"].unflatten(values[:n])]
        if self._with_state:
            head.append(self._defs["state"].unflatten(values[n:]))
        next_key = None
        if self._takes_rng:
            rng = None
            if not self._needs_rng and self._looked_at is not None:
                self._needs_rng = self._draws_a_key(head, args, kwargs)
            if self._needs_rng:
                next_key, keys = split_key(self.rng.value, 1)
                rng = keys[0]
            out = self.transformed.apply(*head, rng, *args, **kwargs)
        else:
            out = self.transformed.apply(*head, *args, **kwargs)
        changed = {}
        if self._with_state:
            out, new_state = out
            changed = {i: leaf for i, leaf in enumerate(
                self._state_leaves(new_state, values), start=n) if leaf is not values[i]}
        self._commit_call(changed, next_key)
        return out

    def _draws_a_key(self, head: list, args: tuple, kwargs: dict) -> bool:
        """Whether ``apply`` uses its ``rng`` for this call: its jaxpr, traced with a
        placeholder key, reads the key. Remembered per keyword arguments (when hashable)."""
        try:
            seen = (tuple(sorted(kwargs.items())),)
            hash(seen)
        except TypeError:  # unhashable keyword values: look every time
            seen = None
        if seen is not None and seen in self._looked_at:
            return False
        key = self.rng.value
        jaxpr = jax.make_jaxpr(lambda rng: self.transformed.apply(*head, rng, *args, **kwargs))(
            jax.ShapeDtypeStruct(key.shape, key.dtype)).jaxpr
        placeholder = jaxpr.invars[0]
        used = any(v is placeholder for eqn in jaxpr.eqns for v in eqn.invars) or any(
            v is placeholder for v in jaxpr.outvars)
        if not used and seen is not None:
            self._looked_at.add(seen)
        return used

    def _state_leaves(self, new_state: Mapping, values: list) -> list:
        """The returned state's leaves in our order (``values``' own for entries it lacks).

        Raises, before anything is written, for entries that are not among ours.
        """
        leaves, treedef = jax.tree_util.tree_flatten(new_state)
        if treedef == self._defs["state"]:
            return leaves
        flat = {"state/" + path_name(path): leaf
                for path, leaf in jax.tree_util.tree_flatten_with_path(dict(new_state))[0]}
        ours = self._names[self._n_params:]
        unknown = sorted(set(flat) - set(ours))
        if unknown:
            raise ValueError("HaikuModule: apply returned state entries it was not given: "
                             + ", ".join(unknown) + ". Pass the full state from init.")
        return [flat.get(name, value) for name, value in zip(ours, values[self._n_params:])]

    def __repr__(self) -> str:
        return (f"HaikuModule({type(self.transformed).__name__}, {self._n_params} params, "
                f"{len(self._leaves) - self._n_params} state)")


# ----- object module -> Haiku ------------------------------------------------------------
def _split_name(name: str) -> tuple[str, str]:
    """``'(Seq)[0](Linear).w'`` -> ``('(Seq)[0](Linear)', 'w')``; a bare name -> ``('~', name)``."""
    module, dot, leaf = name.rpartition(".")
    return (module, leaf) if dot and module else ("~", name)


def to_haiku(module: Callable, vc: Optional[VarCollection] = None) -> hk.TransformedWithState:
    """An object module as an ``hk.TransformedWithState``.

    Args:
      module: a ``bridge.Module`` (or any callable, with ``vc``); ``apply`` calls it.
      vc: its variables (default ``module.vars()``).

    Returns:
      ``hk.TransformedWithState(init, apply)``. Params are the ``TrainVar``s, state the other
      variables, as Haiku's two-level dicts keyed by the object names split at the last dot
      (``'(Sequential)[0](Linear).w'`` -> ``params['(Sequential)[0](Linear)']['w']``).

      * ``init(rng, *args, **kwargs) -> (params, state)``: the module's current values (the
        same arrays); the module is not run.
      * ``apply(params, state, rng, *args, **kwargs) -> (output, new_state)``: runs the
        module on the given values; nothing in the module changes. Variables the module
        assigns (batch-norm statistics) come back in ``new_state``. With an ``rng``, the
        ``RandomState``s (e.g. of ``bridge.nn.Dropout``) draw from it and keep their
        entries in ``new_state``; with ``rng=None`` they use (and advance) their ``state``
        entries.

    Example::

        f = bridge.haiku.to_haiku(model)
        params, state = f.init(None, x)
        y, state = jax.jit(f.apply)(params, state, None, x, training=True)
    """
    if vc is None:
        vc = module_vars(module, needed_by="to_haiku")
    names = vc.names()
    held = storages(vc)
    slots = [("params" if isinstance(s, TrainVar) else "state",) + _split_name(names[id(s)])
             for s in held]
    random = [i for i, s in enumerate(held) if isinstance(s, RandomState)]
    state_slots = [i for i, (part, _, _) in enumerate(slots) if part == "state"]
    pure = functionalize(module, held,
                         owner=f"to_haiku({getattr(module, '__qualname__', module)!r})")

    def init(rng: Any, *args: Any, **kwargs: Any) -> tuple[dict, dict]:
        del rng, args, kwargs  # the weights exist already
        trees: dict[str, dict] = {"params": {}, "state": {}}
        for (part, mod, leaf), s in zip(slots, held):
            trees[part].setdefault(mod, {})[leaf] = s.value
        return trees["params"], trees["state"]

    def apply(params: Mapping, state: Mapping, rng: Any, *args: Any,
              **kwargs: Any) -> tuple[Any, dict]:
        trees = {"params": params, "state": state or {}}
        try:
            values = [trees[part][mod][leaf] for part, mod, leaf in slots]
        except KeyError:
            missing = [f"{part}[{mod!r}][{leaf!r}]" for part, mod, leaf in slots
                       if leaf not in trees[part].get(mod, {})]
            raise KeyError("to_haiku apply: missing entries " + ", ".join(missing)) from None
        if rng is not None and random:
            key = jax.random.key_data(rng) if _is_key(rng) else rng
            keys = jax.random.split(key, len(random)) if len(random) > 1 else [key]
            for i, k in zip(random, keys):
                values[i] = k
        out, new = pure(values, *args, **kwargs)
        new_state = {mod: dict(entries) for mod, entries in (state or {}).items()}
        skip = set(random) if rng is not None else set()
        for i in state_slots:
            if new[i] is not values[i] and i not in skip:
                _, mod, leaf = slots[i]
                new_state[mod][leaf] = new[i]
        return out, new_state

    return hk.TransformedWithState(init=init, apply=apply)
