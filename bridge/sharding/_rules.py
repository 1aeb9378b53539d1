"""Rules from variable names to ``PartitionSpec``s, and placing a collection on a mesh."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bridge.state import BaseVar, VarCollection
from bridge.state._access import commit, current, storage_of, tracing
from bridge.state._collection import as_collection

__all__ = ["ShardingError", "Rules", "largest_axis", "shard", "follow", "constrain"]

Shape = tuple[int, ...]
SpecOrFn = Union[PartitionSpec, Callable[[Shape], PartitionSpec]]
RulesLike = Union["Rules", Mapping[str, PartitionSpec]]


class ShardingError(ValueError):
    """Rules or specs that do not fit the variables or the mesh; nothing was changed.

    The message lists every problem at once, one line per variable or rule.
    """


# ----- the variables of a collection, each once -------------------------------------------------
def _named(vc: VarCollection) -> list[tuple[str, BaseVar]]:
    """``(first name, storage variable)`` for each variable of ``vc`` once, in its order."""
    names = vc.names()
    return [(names[id(storage_of(v))], storage_of(v)) for v in vc]


def _shape(var: BaseVar) -> Shape:
    return tuple(current(var).shape)


def _spec_problems(name: str, shape: Shape, spec: Any, mesh: Optional[Mesh]) -> list[str]:
    """Why ``spec`` cannot place an array of ``shape`` on ``mesh`` ([] when it can)."""
    where = f"  {name}: shape {shape}, spec {spec}"
    if not isinstance(spec, PartitionSpec):
        return [f"{where}: a rule must give a jax.sharding.PartitionSpec, got "
                f"{type(spec).__name__}"]
    if len(spec) > len(shape):
        return [f"{where}: the spec has {len(spec)} entries but the variable has "
                f"{len(shape)} ax{'is' if len(shape) == 1 else 'es'} (give at most one entry "
                "per axis; missing trailing entries mean 'not split')"]
    if mesh is None:
        return []
    problems, used = [], []
    for axis, entry in enumerate(spec):
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        unknown = [n for n in names if n not in mesh.shape]
        if unknown:
            problems.append(f"{where}: mesh axis {', '.join(map(repr, unknown))} does not exist "
                            f"(the mesh has {dict(mesh.shape)})")
            continue
        used += names
        parts = math.prod(mesh.shape[n] for n in names)
        if shape[axis] % parts:
            problems.append(f"{where}: axis {axis} of size {shape[axis]} cannot be split into "
                            f"{parts} equal parts over mesh axes {names} (split another axis, "
                            "or replicate it)")
    twice = sorted({n for n in used if used.count(n) > 1})
    if twice:
        problems.append(f"{where}: mesh axis {', '.join(map(repr, twice))} is used for more "
                        "than one array axis")
    return problems


def _raise(problems: list[str], what: str) -> None:
    if problems:
        raise ShardingError(f"{what}; nothing was changed because:\n" + "\n".join(problems))


# ----- rules ------------------------------------------------------------------------------------
class Rules:
    """Regular expressions over variable names, each giving a ``PartitionSpec``.

    A variable takes the spec of the **first** rule whose pattern matches its name
    (``re.search``, so anchor with ``$`` or ``^`` when needed). A variable that matches no
    rule is replicated (``PartitionSpec()``), or, with ``strict=True``, is an error that lists
    every unmatched name at once.

    A spec has one entry per leading axis of the variable (``None``: not split; a mesh axis
    name; or a tuple of mesh axis names). Instead of a spec, a rule can give a function of
    the variable's shape that returns one, such as ``largest_axis``.

    Args:
      rules: ``(pattern, spec)`` pairs, tried in order; a pattern is a string or a compiled
        ``re.Pattern``.
      strict: a variable that no rule matches is an error instead of replicated.

    Raises:
      ShardingError: a pattern does not compile, or an entry is not a pair of a pattern and
        a spec (all such entries are listed).

    Example (tensor parallelism, Megatron-style, on a mesh with a ``'model'`` axis)::

        rules = bridge.sharding.Rules([
            (r"\\[0\\]\\(Linear\\)\\.w$", P(None, "model")),   # (in, hidden): split columns
            (r"\\[0\\]\\(Linear\\)\\.b$", P("model")),         # (hidden,)
            (r"\\[2\\]\\(Linear\\)\\.w$", P("model", None)),   # (hidden, out): split rows
        ])                                                  # anything else: replicated
        rules.specs(model.vars(), mesh)
        # {'(MLP).layers(Sequential)[0](Linear).w': P(None, 'model'), ...}
    """

    def __init__(self, rules: Iterable[tuple[Union[str, re.Pattern[str]], SpecOrFn]], *,
                 strict: bool = False):
        compiled, problems = [], []
        for i, rule in enumerate(rules):
            if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
                problems.append(f"  rule {i}: expected a (pattern, PartitionSpec) pair, got "
                                f"{rule!r}")
                continue
            pattern, spec = rule
            if not (isinstance(spec, PartitionSpec) or callable(spec)):
                problems.append(f"  rule {i} ({pattern!r}): expected a PartitionSpec or a "
                                f"function of the shape, got {type(spec).__name__}")
                continue
            try:
                compiled.append((re.compile(pattern), spec))
            except (re.error, TypeError) as e:
                problems.append(f"  rule {i} ({pattern!r}): not a regular expression ({e})")
        _raise(problems, "Rules")
        self.rules: tuple[tuple[re.Pattern[str], SpecOrFn], ...] = tuple(compiled)
        self.strict = strict

    def match(self, name: str, shape: Shape) -> Optional[PartitionSpec]:
        """The spec of the first rule matching ``name`` (``None`` when no rule matches)."""
        for pattern, spec in self.rules:
            if pattern.search(name):
                return spec(tuple(shape)) if callable(spec) else spec
        return None

    def specs(self, vc: VarCollection, mesh: Optional[Mesh] = None, *,
              _owner: str = "Rules.specs") -> dict[str, PartitionSpec]:
        """``{name: PartitionSpec}`` for each variable of ``vc`` once (under its first name).

        With ``mesh``, also check that each spec names axes of the mesh and that they
        divide the axes of the variable they split.

        Raises:
          ShardingError: some specs do not fit (each is listed with the variable's name,
            shape and spec), or, with ``strict=True``, some names match no rule (all of them
            are listed).
        """
        vc = as_collection(vc, "Rules.specs: vc")
        out, problems, unmatched = {}, [], []
        for name, var in _named(vc):
            shape = _shape(var)
            spec = self.match(name, shape)
            if spec is None:
                if self.strict:
                    unmatched.append(f"  {name}: shape {shape}")
                spec = PartitionSpec()
            problems += _spec_problems(name, shape, spec, mesh)
            out[name] = spec
        if unmatched:
            problems.append("these variables match no rule (strict=True; add a rule such as "
                            "(r'.*', PartitionSpec()) last to replicate the rest):")
            problems += unmatched
        _raise(problems, _owner)
        return out

    def __repr__(self) -> str:
        rows = ", ".join(f"({p.pattern!r}, {s!r})" for p, s in self.rules)
        return f"Rules([{rows}], strict={self.strict})"


def largest_axis(mesh_axis: str, parts: int, *, min_size: int = 0
                 ) -> Callable[[Shape], PartitionSpec]:
    """A rule value for FSDP: split the largest axis that ``parts`` divides over ``mesh_axis``.

    Arrays with fewer than ``min_size`` elements, scalars, and arrays with no axis that
    ``parts`` divides are replicated (``PartitionSpec()``). Ties go to the last axis.

    Args:
      mesh_axis: the mesh axis to split over, e.g. ``"data"``.
      parts: its size, ``mesh.shape["data"]``.
      min_size: replicate smaller arrays (biases, norms) whose split would save little.

    Example::

        fsdp = bridge.sharding.Rules([(r".*", largest_axis("data", mesh.shape["data"]))])
        # a (16, 64) weight on 8 devices -> P(None, 'data'): each device holds (16, 8)
    """
    def spec(shape: Shape) -> PartitionSpec:
        if math.prod(shape) < max(min_size, 1):
            return PartitionSpec()
        fits = [a for a, n in enumerate(shape) if n % parts == 0]
        if not fits:
            return PartitionSpec()
        axis = max(fits, key=lambda a: (shape[a], a))
        return PartitionSpec(*([None] * axis), mesh_axis)

    spec.__name__ = spec.__qualname__ = f"largest_axis({mesh_axis!r}, {parts})"
    return spec


# ----- placing ----------------------------------------------------------------------------------
def _resolve(vc: VarCollection, mesh: Mesh, rules: RulesLike, owner: str
             ) -> tuple[list[tuple[str, BaseVar]], dict[str, PartitionSpec]]:
    named = _named(vc)
    if isinstance(rules, Rules):
        return named, rules.specs(vc, mesh, _owner=owner)
    if not isinstance(rules, Mapping):
        raise TypeError(f"{owner}: rules must be a bridge.sharding.Rules or a dict of name -> "
                        f"PartitionSpec (as Rules.specs and follow return), got "
                        f"{type(rules).__name__}.")
    problems = []
    for name, var in named:
        if name not in rules:
            problems.append(f"  {name}: shape {_shape(var)}: no spec given for it")
        else:
            problems += _spec_problems(name, _shape(var), rules[name], mesh)
    problems += [f"  {name}: a spec is given but the collection has no such variable"
                 for name in rules if name not in vc]
    _raise(problems, owner)
    return named, {name: rules[name] for name, _ in named}


def shard(vc: VarCollection, mesh: Mesh, rules: RulesLike) -> dict[str, PartitionSpec]:
    """Place every variable of ``vc`` on ``mesh`` with the spec its rule gives.

    Each value becomes ``jax.device_put(value, NamedSharding(mesh, spec))``, written through
    the one write path: every spec is checked first, then all variables are assigned, or,
    on any problem, none. A ``TrainRef`` places its target. Call it outside ``Jit``, before
    the first step; ``Jit`` then compiles the step for these shardings and JAX partitions it.

    Args:
      vc: the variables, e.g. ``model.vars()``.
      mesh: a ``jax.sharding.Mesh``.
      rules: a ``Rules``, or ``{name: PartitionSpec}`` naming every variable of ``vc``
        (as ``Rules.specs`` and ``follow`` return). A variable with several names takes
        the spec of its first name; the others may be given too, and are ignored.

    Returns:
      ``{name: PartitionSpec}``, each variable once under its first name: pass it to
      ``follow`` (optimizer state) and ``constrain`` (inside the step).

    Raises:
      ShardingError: some specs do not fit their variables or the mesh, or a dict of specs
        misses or adds names; every problem is listed and nothing is changed.

    Example::

        mesh = Mesh(np.array(jax.devices()), ("data",))
        specs = bridge.sharding.shard(model.vars(), mesh, rules)
        bridge.sharding.shard(opt.vars(), mesh, bridge.sharding.follow(opt, model.vars(), specs))
    """
    vc = as_collection(vc, "shard: vc")
    if not isinstance(mesh, Mesh):
        raise TypeError(f"shard: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if tracing():
        raise ShardingError("shard places concrete arrays on devices, so it runs outside Jit and "
                            "other transformations; inside a step use "
                            "bridge.sharding.constrain(vc, mesh, specs).")
    named, specs = _resolve(vc, mesh, rules, "shard")
    values = [jax.device_put(current(var), NamedSharding(mesh, specs[name]))
              for name, var in named]
    commit([var for _, var in named], values, owner="shard", names=[n for n, _ in named])
    return specs


def constrain(vc: VarCollection, mesh: Mesh, specs: Mapping[str, PartitionSpec]) -> None:
    """Inside a step: ask the compiler to keep each variable's new value with its spec.

    ``Jit`` already runs on the shardings of the variables it reads, and JAX's propagation
    usually gives the new weights the same ones. Calling ``constrain`` at the end of the step
    (``jax.lax.with_sharding_constraint`` on every value) makes it certain, whatever the
    step computes. Outside a transformation it is ``shard`` with a dict of specs.

    Args:
      vc: the variables to constrain (declared by the ``Jit`` that runs the step).
      mesh: the mesh the specs refer to.
      specs: ``{name: PartitionSpec}`` for every variable of ``vc``, as ``shard`` returns.

    Example::

        def step(x, y):
            grads, values = gv(x, y)
            opt(grads)
            bridge.sharding.constrain(model.vars() + opt.vars(), mesh, specs)
            return values[0]
    """
    vc = as_collection(vc, "constrain: vc")
    if not tracing():
        shard(vc, mesh, specs)
        return
    named, specs = _resolve(vc, mesh, specs, "constrain")
    values = [jax.lax.with_sharding_constraint(var.value, NamedSharding(mesh, specs[name]))
              for name, var in named]
    commit([var for _, var in named], values, owner="constrain", names=[n for n, _ in named])


# ----- optimizer state --------------------------------------------------------------------------
def _optimizer_parts(opt: Any) -> tuple[list[BaseVar], list[BaseVar], Any, Any]:
    """``(parameter refs, state variables in leaf order, transformation, state treedef)``."""
    layout = getattr(opt, "state_layout", None)
    if not callable(layout):
        raise TypeError(
            f"follow: expected a bridge.optimizer.Optax or an Objax-style optimizer "
            f"(bridge.optimizer.Adam...), got {type(opt).__name__}. For other modules, write "
            "Rules over the names of their vars() and call shard with them.")
    parts = layout()
    return list(parts.params), list(parts.state), parts.transform, parts.treedef


def follow(opt: Any, params: VarCollection, specs: Mapping[str, PartitionSpec]
           ) -> dict[str, PartitionSpec]:
    """Specs for ``opt.vars()``: state that stands for a parameter takes that parameter's spec.

    Optax keeps, for Adam, a ``mu`` and a ``nu`` of the parameters' shapes; their variables
    are named ``(Optax).state(ModuleList)[i]``, which says nothing of the parameter. ``follow``
    finds them from the transformation's structure (``optax.tree_map_params``), gives each
    the spec of its parameter, and replicates the rest (step counters, scalars).

    Args:
      opt: a ``bridge.optimizer.Optax``, or an Objax-style optimizer (``Adam``, ``Momentum``...).
      params: the collection ``specs`` names, e.g. ``model.vars()``.
      specs: ``{name: PartitionSpec}`` for ``params`` (what ``shard`` returned);
        parameters of ``opt`` missing from it are replicated.

    Returns:
      ``{name: PartitionSpec}`` for every variable of ``opt.vars()``, ready for
      ``shard``.

    Example::

        specs = bridge.sharding.shard(model.vars(), mesh, rules)
        bridge.sharding.shard(opt.vars(), mesh, bridge.sharding.follow(opt, model.vars(), specs))
    """
    refs, state, initable, treedef = _optimizer_parts(opt)
    params = as_collection(params, "follow: params")
    by_var = {id(var): specs.get(name, PartitionSpec()) for name, var in _named(params)}
    param_specs = [by_var.get(id(storage_of(r)), PartitionSpec()) for r in refs]
    by_var.update({id(storage_of(r)): s for r, s in zip(refs, param_specs)})
    # Leaves are replaced by indices into param_specs (-1: not a parameter): a spec is not a
    # pytree leaf, an int is.
    try:
        index = optax.tree_map_params(initable, lambda _, i: i,
                                      treedef.unflatten([current(v) for v in state]),
                                      list(range(len(refs))),
                                      transform_non_params=lambda _: -1)
    except Exception as e:  # a transformation that tree_map_params cannot see through
        raise ShardingError(
            f"follow: cannot tell which optimizer state stands for which parameter ({e}). "
            "Give the state specs yourself: Rules over the names of opt.vars().") from None
    leaves = jax.tree_util.tree_leaves(index)
    if len(leaves) != len(state):
        raise ShardingError(
            f"follow: the optimizer state has {len(state)} variables but its structure gave "
            f"{len(leaves)} specs. Give the state specs yourself: Rules over the names of "
            "opt.vars().")
    state_specs = {id(storage_of(v)): (param_specs[i] if i >= 0 else PartitionSpec())
                   for v, i in zip(state, leaves)}
    out = {}
    for name, var in _named(opt.vars()):
        out[name] = state_specs.get(id(var), by_var.get(id(var), PartitionSpec()))
    return out
