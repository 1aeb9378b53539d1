"""Flax models as object modules, and object modules as Linen modules.

``FlaxModule(linen_module, variables)``
    a Linen model and its variables as a ``bridge.Module``: ``params`` become ``TrainVar``s,
    every other collection ``StateVar``s, so ``GradValues``, ``Jit``, ``Vectorize`` and the
    optimizers work on it like on any object module.
``NNXModule(nnx_module)``
    the same for a Flax NNX module: ``nnx.Param`` -> ``TrainVar``, other NNX variables ->
    ``StateVar``, the keys of ``nnx.Rngs`` streams -> ``RandomState``.
``to_linen(module)``
    an object module as a Linen module whose ``init`` returns the module's current
    weights and whose ``apply`` is pure.

How a wrapper call stays cheap: everything that depends on names and paths is worked out
once, in the constructor (the pytree structure, which leaves are state, where updates go).
A call only lists the variables' values, rebuilds the pytree with the stored tree
structure, calls ``apply`` and writes back the leaves that changed. Inside ``bridge.Jit``
all of this happens at trace time, so the compiled step is the same program as a native
``jax.jit`` step over the Flax variables.

A call is all or nothing: the new state leaves and the next rng key are all worked out
first and written by one ``commit``, so a value that does not fit its variable (or a
model that created variables the wrapper does not hold) raises with every variable, the
rng included, left as it was.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
from flax import nnx
from flax.core import FrozenDict, meta, unfreeze
from flax.errors import InvalidRngError

from bridge.flax import _nnx_types as nt
from bridge.flax._convert import note_linen_box, note_nnx
from bridge.interop import _metadata
from bridge.interop._metadata import LINEN_PATH
from bridge.interop._tree_module import TreeModule, key_name, path_name, path_parts
from bridge.pure import functionalize
from bridge.state import BaseVar, RandomState, StateVar, TrainVar, VarCollection
from bridge.state._access import read, split_key, storages
from bridge.state._module import module_vars

__all__ = ["FlaxModule", "MissingRngStreamError", "NNXModule", "to_linen"]


class MissingRngStreamError(ValueError):
    """A wrapped Linen model asked for an rng stream that ``FlaxModule`` does not pass.

    Raised from Flax's own ``InvalidRngError`` (its ``__cause__``, whose message names the
    stream). ``streams`` holds the streams that were passed. Nothing was changed by the
    call that raised.
    """

    def __init__(self, streams: Sequence[str], declared: bool):
        self.streams = tuple(streams)
        given = ", ".join(repr(s) for s in self.streams) or "none"
        how = ("the streams given in rng_streams" if declared
               else "the streams found in the model's modules (their `rng_collection`)")
        super().__init__(
            "FlaxModule: the model asked for an rng stream it was not given (the Flax error "
            f"above names it); {how}: {given}. Declare every stream the model draws from, "
            "e.g. FlaxModule(model, variables, rng_streams=(\"dropout\",)).")


def _streams_of(found: set) -> Callable:
    """A Linen method interceptor adding the ``rng_collection`` of each called module to
    ``found`` (``nn.Dropout`` has one; user modules may follow that convention)."""

    def interceptor(method: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        stream = getattr(context.module, "rng_collection", None)
        if isinstance(stream, str):
            found.add(stream)
        return method(*args, **kwargs)

    return interceptor


class FlaxModule(TreeModule):
    """A Flax Linen model with its variables, as an object module.

    Args:
      module: a ``flax.linen.Module``.
      variables: its variables, as ``module.init`` returns them (every collection). The
        arrays are kept as they are, not copied.
      seed: seed of the ``RandomState`` that rng streams (dropout, ...) are drawn from.
      rng_streams: names of the rng streams the model draws from (``("dropout",)``). Given,
        every call passes a key for each of exactly these streams, and a model asking for
        another one raises ``MissingRngStreamError``. ``None`` (the default): the streams
        are found on the first call from the model's structure, see below.

    Variables (``vars()``), in Flax's sorted order then the random state:
      ``(FlaxModule).<collection>/<path>/<leaf>`` for every leaf of ``variables`` (a
      ``TrainVar`` for ``params``, a ``StateVar`` otherwise), e.g.
      ``(FlaxModule).batch_stats/BatchNorm_0/mean``, ``(FlaxModule).params/Dense_0/kernel``;
      then ``(FlaxModule).rng`` (a ``RandomState``).

    Calling ``m(*args, **kwargs)`` runs ``module.apply(variables, *args, **kwargs)`` with
    every collection other than ``params`` mutable and stores the updated values (batch
    statistics) back in their ``StateVar``s; keyword arguments (``train=True``) pass
    through.

    Random numbers. A call with streams to feed draws their keys from ``m.rng``: with the
    streams' names sorted, ``keys = jax.random.split(rng, len(streams) + 1)``; ``keys[0]``
    becomes the new ``rng`` and ``keys[1 + i]`` is the key of stream ``i`` (for dropout
    alone: ``rng, dropout_key = jax.random.split(rng)``). Inside ``bridge.Vectorize`` every
    example gets its own keys. Passing ``rngs=...`` to a call uses those keys instead,
    leaves ``m.rng`` alone and finds no streams.

    Which streams: those of ``rng_streams`` when given. Otherwise the first call finds
    them (inside ``bridge.Jit`` it runs while tracing, so compiled calls pay nothing): it
    runs ``apply`` noting the ``rng_collection`` attribute of every Linen module called
    (``nn.Dropout``'s is ``"dropout"``; give your own modules one to be found). If Flax
    reports a stream missing, the call is run again with the streams noted so far (again
    while that adds streams). The streams noted are then fixed for every later call,
    which draws keys for all of them whether or not it uses them (a first call in eval
    mode, with dropout off, draws none; the next calls do). A stream that cannot be found
    this way (``self.make_rng("noise")`` in a module without ``rng_collection``) raises
    ``MissingRngStreamError``: pass ``rng_streams=("noise", ...)``.

    A call that raises (a new value of the wrong shape or dtype, a variable the model
    created, a missing rng stream) changes no variable, ``m.rng`` included.

    Example::

        model = CNN()                                   # a flax.linen.Module
        variables = model.init(key, x, train=False)
        m = bridge.flax.FlaxModule(model, variables)
        opt = bridge.optimizer.Optax(m.vars(), optax.adam(1e-3))
        gv = bridge.GradValues(lambda x, y: loss(m(x, train=True), y), m.vars())

        @bridge.Function.with_vars(m.vars() + opt.vars())
        def step(x, y):
            g, v = gv(x, y)
            opt(g)
            return v[0]

        step = bridge.Jit(step)
        m.variables                                     # current Linen variables
    """

    def __init__(self, module: nn.Module, variables: Mapping[str, Any], *, seed: int = 0,
                 rng_streams: Optional[Sequence[str]] = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"FlaxModule takes a flax.linen.Module, got {type(module).__name__}"
                            " (use NNXModule for Flax NNX modules).")
        if isinstance(variables, FrozenDict):
            variables = unfreeze(variables)  # rebuilds the nesting only; arrays are shared
        if not isinstance(variables, Mapping):
            raise TypeError("FlaxModule: `variables` must be the dict returned by "
                            f"module.init, got {type(variables).__name__}.")
        self.module = module
        flat, self._treedef = jax.tree_util.tree_flatten_with_path(dict(variables))
        self._set_leaves([
            (path_name(path), (TrainVar if key_name(path[0]) == "params" else StateVar)(leaf))
            for path, leaf in flat])
        # Leaves in metadata boxes (nn.Partitioned): the converters box them again.
        boxes = jax.tree_util.tree_flatten_with_path(
            dict(variables), is_leaf=lambda x: isinstance(x, meta.AxisMetadata))[0]
        templates = {path_name(path): box.replace_boxed(None) for path, box in boxes
                     if isinstance(box, meta.AxisMetadata)}
        for name, var in zip(self._names, self._leaves):
            if name in templates:
                note_linen_box(var, templates[name])
        # A leaf named with '/' (self.param("a/b")) makes its text name ambiguous: the
        # converters rebuild the tree from these parts.
        for (path, _), var in zip(flat, self._leaves):
            parts = path_parts(path)
            if any("/" in p for p in parts):
                _metadata.remember(var, LINEN_PATH, parts)
        # The collections apply may change, and where their leaves sit among ours: the
        # updates come back as {collection: tree}, whose leaves are in this same order.
        self._mutable = sorted(c for c in variables if c != "params")
        self._state_index = [i for i, (path, _) in enumerate(flat)
                             if key_name(path[0]) != "params"]
        self._state_treedef = jax.tree_util.tree_structure(
            {c: variables[c] for c in self._mutable})
        if isinstance(rng_streams, str):
            raise TypeError("FlaxModule: rng_streams takes a sequence of stream names, "
                            f"e.g. ({rng_streams!r},), not a str.")
        # Declared streams are fixed; otherwise the first call finds them (_find_streams).
        self._streams_fixed = rng_streams is not None
        self._rng_declared = rng_streams is not None
        self._rng_streams = tuple(sorted(set(rng_streams or ())))
        self.rng = RandomState(seed)

    @property
    def variables(self) -> dict:
        """The current Linen variables dict (every collection; the variables' own arrays)."""
        return self._treedef.unflatten([v.value for v in self._leaves])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``module.apply(variables, *args, **kwargs)``; see the class docstring."""
        if "mutable" in kwargs:
            raise TypeError("FlaxModule: do not pass `mutable`; every collection other than "
                            "'params' is mutable and its updates are kept in StateVars.")
        values = read(self._leaves)
        variables = self._treedef.unflatten(values)
        given_rngs = kwargs.pop("rngs", None)
        if given_rngs is not None:
            out, updates = self._apply(variables, args, kwargs, given_rngs)
            next_key = None
        elif self._streams_fixed:
            try:
                out, updates, next_key = self._apply_with_streams(variables, args, kwargs,
                                                                  self._rng_streams)
            except InvalidRngError as e:
                raise MissingRngStreamError(self._rng_streams, self._rng_declared) from e
        else:
            out, updates, next_key = self._find_streams(variables, args, kwargs)
        self._commit_call(self._changed_state(updates, values) if updates else {}, next_key)
        return out

    def _apply(self, variables: Any, args: tuple, kwargs: dict, rngs: Any) -> tuple[Any, Any]:
        """``(output, state updates or None)`` of ``module.apply``."""
        if self._mutable:
            return self.module.apply(variables, *args, rngs=rngs, mutable=self._mutable,
                                     **kwargs)
        return self.module.apply(variables, *args, rngs=rngs, **kwargs), None

    def _apply_with_streams(self, variables: Any, args: tuple, kwargs: dict,
                            streams: Sequence[str]) -> tuple[Any, Any, Any]:
        """``apply`` with a key for each of ``streams`` drawn from ``self.rng``;
        ``(output, updates, next rng key or None)``. Nothing is written."""
        rngs, next_key = None, None
        if streams:
            next_key, keys = split_key(self.rng.value, len(streams))
            rngs = dict(zip(streams, keys))
        out, updates = self._apply(variables, args, kwargs, rngs)
        return out, updates, next_key

    def _find_streams(self, variables: Any, args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
        """The first call without declared streams: note the ``rng_collection`` of every
        module called; while Flax reports a missing stream and the notes hold new ones,
        run again with them. Once a run succeeds, the streams noted are fixed."""
        found: set = set()
        streams = self._rng_streams
        while True:
            try:
                with nn.intercept_methods(_streams_of(found)):
                    result = self._apply_with_streams(variables, args, kwargs, streams)
                break
            except InvalidRngError as e:
                if found.issubset(streams):  # nothing new to try
                    raise MissingRngStreamError(streams, False) from e
                streams = tuple(sorted(found.union(streams)))
        self._rng_streams = tuple(sorted(found.union(streams)))
        self._streams_fixed = True
        return result

    def _changed_state(self, updates: Mapping[str, Any], values: list) -> dict[int, Any]:
        """``{leaf index: new value}`` for the state leaves ``apply`` replaced.

        Raises (before anything is written) when the model created variables that are not
        among ours: there is no variable to keep them in.
        """
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        if treedef == self._state_treedef:  # the usual case: same collections, same leaves
            return {i: new for i, new in zip(self._state_index, leaves) if new is not values[i]}
        index = {self._names[i]: i for i in self._state_index}
        found, unknown = {}, []
        for path, new in jax.tree_util.tree_flatten_with_path(dict(updates))[0]:
            name = path_name(path)
            if name not in index:
                unknown.append(name)
            elif new is not values[index[name]]:
                found[index[name]] = new
        if unknown:
            raise ValueError(
                "FlaxModule: the model created variables it was not given: "
                + ", ".join(unknown)
                + ". Initialize them (module.init) and pass every collection in `variables`.")
        return found

    def __repr__(self) -> str:
        return f"FlaxModule({type(self.module).__name__}, {len(self._leaves)} variables)"


# ----- NNX --------------------------------------------------------------------------------
def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class NNXModule(TreeModule):
    """A Flax NNX module as an object module.

    Args:
      module: an ``nnx.Module``. Its current arrays become the wrapper's variables (not
        copied); from then on the wrapper holds the values, so train the wrapper and read
        results back with ``m.state`` / ``m.merge()`` rather than from ``module``.

    Variables (``vars()``), in NNX's sorted state order:
      ``(NNXModule).<path>/<leaf>``, e.g. ``(NNXModule).linear/kernel``: an ``nnx.Param``
      becomes a ``TrainVar``; other NNX variables (``BatchStat``, counters, ...) become
      ``StateVar``s; the key of an ``nnx.Rngs`` stream (``.../rngs/dropout/key``) becomes a
      ``RandomState`` (holding the raw key data), its ``count`` a ``StateVar``. Each
      variable remembers its NNX type and metadata (a stream's ``tag``, sharding names,
      ...), so ``bridge.flax.to_nnx_state(m.vars())`` gives back the module's state as NNX
      typed it and ``nnx.merge(graphdef, to_nnx_state(m.vars()))`` equals ``m.merge()``.

    Calling ``m(*args, **kwargs)`` rebuilds the NNX module from the variables
    (``nnx.merge``), calls it and keeps every change it made to its variables. As in NNX, a
    stream's key stays put and its counter advances, so dropout masks change from call to
    call; inside ``bridge.Vectorize`` each example gets its own key (the ``RandomState``s
    are split per example). A call that raises (a new value of the wrong shape or dtype)
    changes no variable.

    Train and eval modes: ``m.view(deterministic=True, use_running_average=True)`` (as
    ``nnx.view``) returns a wrapper with those attributes set that shares ``m``'s
    variables, or pass the flags your module's ``__call__`` takes.

    Example::

        m = bridge.flax.NNXModule(Model(rngs=nnx.Rngs(0, dropout=1)))
        gv = bridge.GradValues(lambda x, y: loss(m(x), y), m.vars())
    """

    def __init__(self, module: nnx.Module):
        if not isinstance(module, nnx.Module):
            raise TypeError(f"NNXModule takes a flax.nnx.Module, got {type(module).__name__} "
                            "(use FlaxModule for Linen modules).")
        self._graphdef, state = nnx.split(module)
        flat_vars = jax.tree_util.tree_flatten_with_path(
            state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
        leaves, self._treedef = jax.tree_util.tree_flatten(state)
        if len(leaves) != len(flat_vars):
            raise NotImplementedError("NNXModule: every NNX variable must hold one array.")
        named: list[tuple[str, BaseVar]] = []
        self._key_impls: dict[int, Any] = {}  # leaf index -> PRNG impl of a typed key
        for i, ((path, variable), leaf) in enumerate(zip(flat_vars, leaves)):
            impl = None
            if isinstance(variable, nnx.Param):
                var = TrainVar(leaf)
            elif isinstance(variable, nnx.RngKey):
                var = RandomState()
                if _is_key(leaf):
                    impl = self._key_impls[i] = jax.random.key_impl(leaf)
                    leaf = jax.random.key_data(leaf)
                var.assign(leaf, check=False)
            else:
                var = StateVar(leaf)
            # the variable's type and metadata, for the converters (to_nnx_state)
            note_nnx(var, type(variable), nt.metadata(variable), impl)
            named.append((path_name(path), var))
        self._set_leaves(named)

    def _leaf_values(self) -> list:
        values = read(self._leaves)
        for i, impl in self._key_impls.items():
            values[i] = jax.random.wrap_key_data(values[i], impl=impl)
        return values

    @property
    def state(self) -> nnx.State:
        """The current ``nnx.State`` (the variables' own arrays)."""
        return self._treedef.unflatten(self._leaf_values())

    def merge(self) -> nnx.Module:
        """A new NNX module holding the current values (shares the arrays)."""
        return nnx.merge(self._graphdef, self.state)

    def view(self, **attributes: Any) -> NNXModule:
        """A wrapper whose module has ``attributes`` set (``nnx.view``), sharing variables.

        Example: ``eval_m = m.view(deterministic=True, use_running_average=True)``.
        """
        viewed = nnx.view(self.merge(), **attributes)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._graphdef = nnx.split(viewed)[0]
        return clone

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the NNX module; its variable updates are kept."""
        values = self._leaf_values()
        model = nnx.merge(self._graphdef, self._treedef.unflatten(values))
        out = model(*args, **kwargs)
        new, treedef = jax.tree_util.tree_flatten(nnx.state(model))
        if treedef != self._treedef:
            raise ValueError("NNXModule: the module changed the structure of its state during "
                             "the call (variables added or removed); that is not supported.")
        self._commit_call({i: jax.random.key_data(leaf) if i in self._key_impls else leaf
                           for i, (old, leaf) in enumerate(zip(values, new))
                           if leaf is not old})
        return out

    def __repr__(self) -> str:
        return f"NNXModule({len(self._leaves)} variables)"


# ----- object module -> Linen ------------------------------------------------------------
class _Handle:
    """An object module and its layout, as a Linen field (hashed and compared by identity,
    so that Linen never looks inside)."""

    def __init__(self, f: Callable, vc: VarCollection, state_collection: str):
        names = vc.names()
        self.storages = storages(vc)
        self.names = [names[id(s)] for s in self.storages]
        self.collections = ["params" if isinstance(s, TrainVar) else state_collection
                            for s in self.storages]
        self.random = [i for i, s in enumerate(self.storages) if isinstance(s, RandomState)]
        self.pure = functionalize(f, self.storages,
                                  owner=f"to_linen({getattr(f, '__qualname__', f)!r})")
        self.f = f

    def __repr__(self) -> str:
        return f"<{self.f!r}>"


class BridgeLinen(nn.Module):
    """Linen face of an object module; build it with ``bridge.flax.to_linen``."""

    handle: _Handle
    rng_stream: str = "dropout"

    @nn.compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        h = self.handle
        values, cells = [], {}
        for i, (collection, name, var) in enumerate(zip(h.collections, h.names, h.storages)):
            if collection == "params":
                values.append(self.param(name, lambda _key, v=var: v.value))
            else:
                cells[i] = self.variable(collection, name, lambda v=var: v.value)
                values.append(cells[i].value)
        from_rngs = bool(h.random) and self.has_rng(self.rng_stream)
        if from_rngs:
            key = self.make_rng(self.rng_stream)
            if _is_key(key):
                key = jax.random.key_data(key)
            keys = jax.random.split(key, len(h.random)) if len(h.random) > 1 else [key]
            for i, k in zip(h.random, keys):
                values[i] = k
        out, new = h.pure(values, *args, **kwargs)
        if not self.is_initializing():
            random = set(h.random)
            for i, cell in cells.items():
                if new[i] is values[i]:
                    continue
                if i in random and (from_rngs
                                    or not self.is_mutable_collection(h.collections[i])):
                    continue  # keys: from `rngs`, or left as they are when not mutable
                cell.value = new[i]
        return out


def to_linen(module: Callable, vc: Optional[VarCollection] = None, *,
             state_collection: str = "batch_stats", rng_stream: str = "dropout") -> nn.Module:
    """An object module as a Linen module.

    Args:
      module: a ``bridge.Module`` (or any callable, with ``vc``); the Linen module calls it
        with the arguments given to ``apply``.
      vc: its variables (default ``module.vars()``).
      state_collection: the Linen collection of the non-trainable variables.
      rng_stream: the Linen rng stream that ``RandomState``s draw from.

    Returns:
      A ``flax.linen.Module``. Its variables are the object module's, one per entry, named
      as in ``vc`` (``{'params': {'(Linear).w': ...}, 'batch_stats': {...}}``): ``TrainVar``s
      in ``params``, the others in ``state_collection``. ``init(key, *args)`` returns the
      current values (the same arrays). ``apply(variables, *args, **kwargs)`` runs the
      object code on the given values and changes nothing in the object module; changed
      state comes back through ``mutable=[state_collection]`` as usual in Linen. When
      ``apply`` gets ``rngs={rng_stream: key}`` the ``RandomState``s (e.g. of
      ``bridge.nn.Dropout``) draw from that key; otherwise they use the stored keys.

    Example::

        lin = bridge.flax.to_linen(model)
        variables = lin.init(jax.random.PRNGKey(0), x)      # model's weights
        y, upd = lin.apply(variables, x, training=True, mutable=['batch_stats'])
    """
    if vc is None:
        vc = module_vars(module, needed_by="to_linen")
    return BridgeLinen(handle=_Handle(module, vc, state_collection), rng_stream=rng_stream)
