"""Converting a ``VarCollection`` to a library's variables and loading them back; porting.

The library-specific modules (``bridge.flax._convert``, ``bridge.haiku._convert``) only
flatten and unflatten their trees; everything else (names, layouts, strict checks,
all-or-nothing assignment) happens here, in one pass over the leaves.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from bridge.interop import _names as nm
from bridge.interop._rules import PRESETS, Layer, Rule
from bridge.state import TrainVar, VarCollection
from bridge.state._variables import mismatch

__all__ = ["LoadReport", "RulesArg", "export", "load", "port", "flatten_linen",
           "unflatten_linen", "flatten_haiku", "unflatten_haiku"]

RulesArg = Union[None, str, Rule, Layer, Iterable[Union[str, Rule, Layer]]]
_NEAREST_LIMIT = 50  # entries that get "nearest" suggestions in one message


@dataclass(frozen=True)
class LoadReport:
    """What a load did. ``strict=True`` raises instead of returning a report with problems.

    Attributes:
      loaded: names of the variables that were assigned.
      missing: variables whose entry was absent (left unchanged).
      unexpected: library keys that no variable asked for (ignored).
      mismatched: variables whose entry had the wrong shape, dtype or type (unchanged),
        with the reason: ``"name: reason"``.
    """

    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Everything fitted: nothing missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)


# ----- rules argument ---------------------------------------------------------------------
@dataclass
class _Options:
    rules: list[Rule] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    mlp: Optional[bool] = None


def _options(rules: RulesArg) -> _Options:
    out = _Options()
    if rules is None:
        return out
    if isinstance(rules, (str, Rule, Layer)):
        rules = [rules]
    for r in rules:
        if isinstance(r, Rule):
            out.rules.append(r)
        elif isinstance(r, Layer):
            out.layers.append(r)
        elif r in ("setup", "compact"):
            out.styles.append(r)
        elif r == "mlp":
            out.mlp = True
        else:
            raise ValueError(f"Unknown rule {r!r}: expected a Rule, a Layer or one of the "
                             f"presets {', '.join(map(repr, PRESETS))}.")
    return out


def _nearest(word: str, pool: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, pool, n=3, cutoff=0.5)
    return f"; nearest: {', '.join(map(repr, close))}" if close else ""


def _check_rules_used(rules: list[Rule], used: set[int], names: Sequence[str], what: str) -> None:
    unused = [r for r in rules if id(r) not in used]
    if unused:
        lines = [f"  {r!r}{_nearest(r.source, names)}" for r in unused]
        raise ValueError(f"{what}: these rules matched no name (nothing was converted):\n"
                         + "\n".join(lines))


# ----- one variable's target ----------------------------------------------------------
@dataclass
class _Target:
    name: str
    var: Any
    key: str
    src_layout: Optional[str] = None
    dst_layout: Optional[str] = None
    extras: list[str] = field(default_factory=list)
    transform: Optional[Callable] = None
    inverse: Optional[Callable] = None
    entry: Optional[nm.Entry] = None
    by_rule: bool = False

    def to_lib(self, x: Any) -> Any:
        if self.by_rule:
            return self.transform(x) if self.transform else x
        return nm.relayout(x, self.src_layout, self.dst_layout)

    def from_lib(self, x: Any) -> Any:
        if self.by_rule:
            return self.inverse(x) if self.inverse else x
        return nm.relayout(x, self.dst_layout, self.src_layout, rank=np.ndim(self.var._value))

    def lib_shape(self) -> tuple[int, ...]:
        return nm.layout_shape(tuple(np.shape(self.var._value)), self.src_layout, self.dst_layout)


# Translating names is most of a conversion's cost, and a program converts the same
# collection again and again (every checkpoint, every export): remember the last few
# translations made with the built-in rules. The key holds each variable's identity, and
# the cached targets hold the variables, so an identity cannot be reused while cached.
_TARGET_CACHE: OrderedDict[tuple, list[_Target]] = OrderedDict()
_TARGET_CACHE_SIZE = 32
_DEFAULT_TABLE = nm.Table(())


def _table(opts: _Options) -> nm.Table:
    return nm.Table(opts.layers) if opts.layers else _DEFAULT_TABLE


def _targets(vc: VarCollection, scheme: str, opts: _Options, style: str, mlp: bool,
             table: nm.Table, used: set[int]) -> list[_Target]:
    if opts.rules or opts.layers:
        return _translate(vc, scheme, opts, style, mlp, table, used)
    key = (scheme, style, mlp, tuple((k, id(v)) for k, v in vc.items()))
    targets = _TARGET_CACHE.get(key)
    if targets is None:
        targets = _translate(vc, scheme, opts, style, mlp, table, used)
        _TARGET_CACHE[key] = targets
        if len(_TARGET_CACHE) > _TARGET_CACHE_SIZE:
            _TARGET_CACHE.popitem(last=False)
    else:
        _TARGET_CACHE.move_to_end(key)
    return targets


def _translate(vc: VarCollection, scheme: str, opts: _Options, style: str, mlp: bool,
               table: nm.Table, used: set[int]) -> list[_Target]:
    namer = nm.ObjaxNamer("nnx" if scheme == "nnx" else style, table)
    names = vc.names()
    out = []
    for v in vc:
        storage = v._storage()
        name = names[id(storage)]
        rule = None
        for r in opts.rules:
            matched, target = r.apply(name)
            if matched:
                used.add(id(r))
                rule = (r, target)
                break
        if rule is not None:
            if rule[1] is not None:
                out.append(_Target(name, storage, rule[1], transform=rule[0].transform,
                                   inverse=rule[0].inverse, by_rule=True))
            continue
        try:
            entry = namer.entry(name, isinstance(storage, TrainVar))
        except nm.NameError_ as e:
            raise ValueError(f"Cannot translate the variable name: {e} Give a Rule for it "
                             "(bridge.interop.Rule).") from None
        native = entry.direct is not None and entry.direct[0] == scheme
        if entry.drop and not native:
            continue  # wrapper bookkeeping, or a Haiku EMA leaf derived from its average
        spec = entry.spec
        if entry.direct is not None:
            src_scheme, key = entry.direct
            src = spec.haiku_layout if (spec and src_scheme == "haiku") else None
        else:
            src_scheme, key = "objax", None
            src = spec.objax_layout if spec else None
        extras: list[str] = []
        if src_scheme == scheme:
            dst = src
        elif scheme == "linen":
            key, dst = entry.linen_key(), None
        elif scheme == "nnx":
            key, dst = nm.nnx_key(entry), None
        else:
            key, extras = nm.haiku_keys(entry, table, mlp)
            dst = spec.haiku_layout if spec else None
        out.append(_Target(name, storage, key, src, dst, extras, entry=entry))
    return out


def _duplicates(targets: list[_Target]) -> list[str]:
    seen: dict[str, str] = {}
    dup = []
    for t in targets:
        for k in [t.key, *t.extras]:
            if k in seen and seen[k] != t.name:
                dup.append(f"  {k}: from both {seen[k]} and {t.name}")
            seen.setdefault(k, t.name)
    return dup


def _profiles(scheme: str, opts: _Options) -> list[tuple[str, bool]]:
    if scheme == "haiku":
        mlps = [True] if opts.mlp else [False, True]
        return [("compact", m) for m in mlps]
    styles = opts.styles or (["setup"] if scheme == "nnx" else ["setup", "compact"])
    return [(s, False) for s in styles]


# ----- export -----------------------------------------------------------------------------
def export(vc: VarCollection, scheme: str, rules: RulesArg, what: str) -> dict[str, Any]:
    """``{flat library key: value}`` for the variables of ``vc`` (values not copied)."""
    vc = _as_vc(vc, what)
    opts = _options(rules)
    table = _table(opts)
    style, mlp = _profiles(scheme, opts)[0]
    used: set[int] = set()
    targets = _targets(vc, scheme, opts, style, mlp, table, used)
    _check_rules_used(opts.rules, used, list(vc.keys()), what)
    dup = _duplicates(targets)
    if dup:
        raise ValueError(f"{what}: several variables translate to the same name; add rules "
                         "to tell them apart:\n" + "\n".join(dup))
    flat: dict[str, Any] = {}
    for t in targets:
        value = t.to_lib(t.var._value)
        flat[t.key] = value
        if t.extras:
            flat[t.extras[0]], flat[t.extras[1]] = nm.ema_extras(value)
    return flat


def targets_for_export(vc: VarCollection, scheme: str, rules: RulesArg) -> list[_Target]:
    """The export targets (used by converters that need per-variable details)."""
    vc = _as_vc(vc, "translate")
    opts = _options(rules)
    style, mlp = _profiles(scheme, opts)[0]
    used: set[int] = set()
    targets = _targets(vc, scheme, opts, style, mlp, _table(opts), used)
    _check_rules_used(opts.rules, used, list(vc.keys()), "translate")
    return targets


# ----- load -------------------------------------------------------------------------------
@dataclass
class _Plan:
    targets: list[_Target]
    assign: list[tuple[_Target, Any]]
    missing: list[_Target]
    unexpected: list[str]
    mismatched: list[tuple[_Target, str]]
    duplicates: list[str]

    @property
    def score(self) -> int:
        return (len(self.missing) + len(self.unexpected) + len(self.mismatched)
                + 1000 * len(self.duplicates))


def _plan(targets: list[_Target], flat: Mapping[str, Any],
          check: Optional[Callable[[_Target, Any], str]],
          value_of: Callable[[Any], Any], ignore: Callable[[str], bool]) -> _Plan:
    used: set[str] = set()
    assign, missing, mismatched = [], [], []
    for t in targets:
        if t.key not in flat:
            if not ignore(t.key):
                missing.append(t)
            continue
        used.add(t.key)
        used.update(t.extras)
        leaf = flat[t.key]
        problem = check(t, leaf) if check else ""
        value = value_of(leaf)
        if not problem:
            if t.by_rule:
                value = t.from_lib(value)
                problem = mismatch(t.var._value, value)
            else:
                problem = _lib_mismatch(t, value)
                if not problem:
                    value = t.from_lib(value)
        if problem:
            mismatched.append((t, problem))
        else:
            assign.append((t, value))
    unexpected = [k for k in flat if k not in used]
    return _Plan(targets, assign, missing, unexpected, mismatched, _duplicates(targets))


def _lib_mismatch(t: _Target, value: Any) -> str:
    want_shape, got_shape = t.lib_shape(), tuple(np.shape(value))
    if want_shape != got_shape:
        return f"expected shape {want_shape}, got {got_shape}"
    return mismatch(np.zeros((), t.var._value.dtype), np.zeros((), _dtype(value)))


def _dtype(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None else np.asarray(x).dtype


def load(vc: VarCollection, flat: Mapping[str, Any], scheme: str, strict: bool,
         rules: RulesArg, what: str, *, check: Optional[Callable[[_Target, Any], str]] = None,
         value_of: Callable[[Any], Any] = lambda x: x,
         ignore: Callable[[str], bool] = lambda key: False) -> LoadReport:
    """Assign the entries of ``flat`` to the variables of ``vc``, all or nothing if strict.

    ``ignore(key)`` tells which absent keys are not "missing" (Haiku state not given).
    """
    vc = _as_vc(vc, what)
    opts = _options(rules)
    table = _table(opts)
    best: Optional[_Plan] = None
    used: set[int] = set()
    for style, mlp in _profiles(scheme, opts):
        targets = _targets(vc, scheme, opts, style, mlp, table, used)
        plan = _plan(targets, flat, check, value_of, ignore)
        if best is None or plan.score < best.score:
            best = plan
        if best.score == 0:
            break
    assert best is not None
    _check_rules_used(opts.rules, used, list(vc.keys()), what)
    if best.duplicates:
        raise ValueError(f"{what}: nothing was loaded: several variables translate to the "
                         "same name; add rules to tell them apart:\n" + "\n".join(best.duplicates))
    if strict and best.score:
        raise ValueError(_message(what, best))
    for t, value in best.assign:
        t.var.assign(value)
    return LoadReport(
        loaded=tuple(t.name for t, _ in best.assign),
        missing=tuple(t.name for t in best.missing),
        unexpected=tuple(best.unexpected),
        mismatched=tuple(f"{t.name}: {p}" for t, p in best.mismatched))


def _message(what: str, plan: _Plan) -> str:
    lines = [f"{what}: nothing was loaded because the entries do not fit the variables "
             "(pass strict=False to load the entries that fit):"]
    missing_keys = [t.key for t in plan.missing]
    if plan.missing:
        lines.append(f"  missing ({len(plan.missing)}): expected by a variable, absent:")
        for i, t in enumerate(plan.missing):
            near = _nearest(t.key, plan.unexpected) if i < _NEAREST_LIMIT else ""
            lines.append(f"    {t.key}  (for {t.name}){near}")
    if plan.unexpected:
        lines.append(f"  unexpected ({len(plan.unexpected)}): no variable takes them:")
        for i, key in enumerate(plan.unexpected):
            near = _nearest(key, missing_keys) if i < _NEAREST_LIMIT else ""
            lines.append(f"    {key}{near}")
    if plan.mismatched:
        lines.append(f"  mismatched ({len(plan.mismatched)}): wrong shape, dtype or type:")
        for t, problem in plan.mismatched:
            lines.append(f"    {t.key}  (for {t.name}): {problem}")
    return "\n".join(lines)


def _as_vc(vc: Any, what: str) -> VarCollection:
    if isinstance(vc, VarCollection):
        return vc
    if isinstance(vc, Mapping):
        return VarCollection(vc)
    raise TypeError(f"{what}: expected a VarCollection (for example `model.vars()`), "
                    f"got {type(vc).__name__}.")


# ----- trees ------------------------------------------------------------------------------
def flatten_linen(variables: Mapping[str, Any], what: str = "variables") -> dict[str, Any]:
    """``{'params': {'Dense_0': {'kernel': x}}}`` → ``{'params/Dense_0/kernel': x}``."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"{what}: expected a dict of collections such as "
                        f"{{'params': {{...}}}}, got {type(variables).__name__}.")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        for k, v in node.items():
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                walk(key, v)
            else:
                flat[key] = v
    walk("", variables)
    return flat


def unflatten_linen(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *path, leaf = key.split("/")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flatten_haiku(params: Optional[Mapping[str, Mapping[str, Any]]],
                  state: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  what: str = "params") -> dict[str, Any]:
    """``({'linear': {'w': x}}, {'bn/~/mean_ema': {...}})`` → ``{'params/linear/w': x, ...}``."""
    flat: dict[str, Any] = {}
    for coll, tree in (("params", params), ("state", state)):
        if tree is None:
            continue
        if not isinstance(tree, Mapping):
            raise TypeError(f"{what}: Haiku {coll} must be a dict {{module name: {{name: "
                            f"array}}}}, got {type(tree).__name__}.")
        for module, leaves in tree.items():
            if not isinstance(leaves, Mapping):
                raise TypeError(f"{what}: Haiku {coll}[{module!r}] must be a dict of arrays, "
                                f"got {type(leaves).__name__}.")
            for leaf, value in leaves.items():
                flat[f"{coll}/{module}/{leaf}"] = value
    return flat


def unflatten_haiku(flat: Mapping[str, Any]) -> tuple[dict, dict]:
    params: dict[str, dict] = {}
    state: dict[str, dict] = {}
    for key, value in flat.items():
        coll, rest = key.split("/", 1)
        module, leaf = rest.rsplit("/", 1)
        (params if coll == "params" else state).setdefault(module, {})[leaf] = value
    return params, state


# ----- port -------------------------------------------------------------------------------
_SCHEMES = ("linen", "haiku")


def _flatten(tree: Any, scheme: str, what: str) -> dict[str, Any]:
    if scheme == "linen":
        return flatten_linen(tree, what)
    if isinstance(tree, tuple) and len(tree) == 2:
        return flatten_haiku(tree[0], tree[1], what)
    return flatten_haiku(tree, None, what)


def port(tree: Any, from_: str, to: str, rules: RulesArg = None, like: Any = None) -> Any:
    """Translate a whole variables tree from one library's naming to another's.

    Args:
      tree: Linen variables (``{'params': ..., 'batch_stats': ...}``) or Haiku
        ``(params, state)`` (or Haiku ``params`` alone).
      from_, to: ``"linen"`` or ``"haiku"``.
      rules: ``Rule``s on whole flat names (``params/Dense_0/kernel`` ↔
        ``params/linear/w``, ``state/batch_norm/~/mean_ema/average``), ``Layer``s, and
        the preset ``"mlp"`` (top-level ``Dense_k`` become ``mlp/~/linear_k``, the names of
        ``hk.nets.MLP``).
      like: optional tree of the target library to port into (for example the output of
        the target model's ``init``). The result is checked against it: every missing,
        unexpected, mis-shaped or mis-typed entry is listed in one ``ValueError``. It also
        gives the rank of Haiku BatchNorm parameters and statistics (``(1, C)`` after a
        dense layer); without it they are ``(1, 1, 1, C)``, and a source of the same
        layout keeps its rank.

    Returns:
      The Linen variables dict, or Haiku ``(params, state)``. Renamed leaves are the same
      array objects; reshaped ones (BatchNorm vectors) are reshaped views.

    Example::

        variables = bridge.interop.port((params, state), "haiku", "linen")
        params2, state2 = bridge.interop.port(variables, "linen", "haiku", like=(params, state))
    """
    what = f"port({from_!r} -> {to!r})"
    for s in (from_, to):
        if s not in _SCHEMES:
            raise ValueError(f"{what}: unknown scheme {s!r}; expected one of {_SCHEMES}.")
    opts = _options(rules)
    table = _table(opts)
    flat = _flatten(tree, from_, "tree")
    like_flat = _flatten(like, to, "like") if like is not None else None
    mlps = [True] if opts.mlp else ([False, True] if to == "haiku" else [False])
    best = None
    used: set[int] = set()
    for mlp in mlps:
        out, problems = _port_flat(flat, from_, to, opts, table, mlp, like_flat, used)
        if best is None or len(problems) < len(best[1]):
            best = (out, problems)
        if not problems:
            break
    assert best is not None
    _check_rules_used(opts.rules, used, list(flat), what)
    if best[1]:
        raise ValueError(f"{what}: the tree does not fit:\n" + "\n".join(best[1]))
    result = best[0]
    return unflatten_linen(result) if to == "linen" else unflatten_haiku(result)


def _port_flat(flat: Mapping[str, Any], from_: str, to: str, opts: _Options, table: nm.Table,
               mlp: bool, like: Optional[Mapping[str, Any]], used: set[int]
               ) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for key, value in flat.items():
        rule = next(((r, t) for r in opts.rules for m, t in [r.apply(key)] if m), None)
        if rule is not None:
            used.add(id(rule[0]))
            if rule[1] is not None:
                _put(out, origin, problems, rule[1], key,
                     rule[0].transform(value) if rule[0].transform else value)
            continue
        entry = nm.linen_entry(key, table) if from_ == "linen" else nm.haiku_entry(key, table)
        if entry.drop and to != from_:
            continue  # a Haiku EMA leaf derived from its average
        spec = entry.spec
        src = spec.haiku_layout if (spec and from_ == "haiku") else None
        extras: list[str] = []
        if to == from_:
            new_key, dst = key, src
        elif to == "linen":
            new_key, dst = entry.linen_key(), None
        else:
            new_key, extras = nm.haiku_keys(entry, table, mlp)
            dst = spec.haiku_layout if spec else None
        rank = np.ndim(like[new_key]) if like is not None and new_key in like else None
        new_value = nm.relayout(value, src, dst, rank)
        _put(out, origin, problems, new_key, key, new_value)
        if extras:
            hidden, counter = nm.ema_extras(new_value)
            _put(out, origin, problems, extras[0], key, hidden)
            _put(out, origin, problems, extras[1], key, counter)
    if like is not None:
        missing = [k for k in like if k not in out]
        unexpected = [k for k in out if k not in like]
        for i, key in enumerate(missing):
            near = _nearest(key, unexpected) if i < _NEAREST_LIMIT else ""
            problems.append(f"  missing: {key}{near}")
        for i, key in enumerate(unexpected):
            near = _nearest(key, missing) if i < _NEAREST_LIMIT else ""
            problems.append(f"  unexpected: {key} (from {origin[key]}){near}")
        for key, value in out.items():
            if key in like:
                ref = like[key]
                if tuple(np.shape(ref)) != tuple(np.shape(value)):
                    problems.append(f"  mismatched: {key} (from {origin[key]}): expected shape "
                                    f"{tuple(np.shape(ref))}, got {tuple(np.shape(value))}")
                elif np.dtype(_dtype(ref)) != np.dtype(_dtype(value)):
                    problems.append(f"  mismatched: {key} (from {origin[key]}): expected dtype "
                                    f"{_dtype(ref)}, got {_dtype(value)}")
    return out, problems


def _put(out: dict, origin: dict, problems: list, key: str, source: str, value: Any) -> None:
    if key in out:
        problems.append(f"  duplicate: {key} from both {origin[key]} and {source}")
        return
    out[key] = value
    origin[key] = source
