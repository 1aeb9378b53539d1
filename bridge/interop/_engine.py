"""Converting a ``VarCollection`` to a library's variables and loading them back; porting.

The library-specific modules (``bridge.flax._convert``, ``bridge.haiku._convert``) only
flatten and unflatten their trees. Here are the names and layouts of every scheme; loads
hand the translated targets to the state layer's load engine (``bridge.state._load``),
which checks everything, reports and assigns, exactly as checkpoint restores do.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from bridge.interop import _metadata, _port
from bridge.interop import _names as nm
from bridge.interop._rules import PRESETS, Layer, Rule
from bridge.state import BaseVar, TrainVar, VarCollection, _load
from bridge.state._access import current, storage_of
from bridge.state._load import LoadMismatchError, LoadReport, nearest
from bridge.state._variables import dtype_of, mismatch

__all__ = ["LoadMismatchError", "LoadReport", "RulesArg", "export", "load", "port",
           "flatten_linen", "unflatten_linen", "flatten_haiku", "unflatten_haiku"]

RulesArg = Union[None, str, Rule, Layer, Iterable[Union[str, Rule, Layer]]]
_RENAME_HINT = ("(if the names differ, give rules that map the variables onto the entries: "
                "bridge.interop.Rule)")
# Schemes whose trees nest a flat key's parts: a key that another key extends
# (``params/a``, ``params/a/b``) would have to be both a value and a branch there.
_NESTED = {"linen": "a Linen variables dict", "nnx": "an nnx.State"}


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


def _check_rules_used(rules: list[Rule], used: set[int], names: Sequence[str], what: str) -> None:
    unused = [r for r in rules if id(r) not in used]
    if unused:
        lines = [f"  {r!r}{nearest(r.source, names)}" for r in unused]
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
    parts: Optional[tuple[str, ...]] = None   # the exact Linen tree path, when the key is ambiguous

    def to_lib(self, x: Any) -> Any:
        if self.by_rule:
            return self.transform(x) if self.transform else x
        return nm.relayout(x, self.src_layout, self.dst_layout)

    def from_lib(self, x: Any) -> Any:
        if self.by_rule:
            return self.inverse(x) if self.inverse else x
        return nm.relayout(x, self.dst_layout, self.src_layout, rank=np.ndim(current(self.var)))

    def nnx_path(self) -> tuple[Union[str, int], ...]:
        """This variable's path in an ``nnx.State`` (``"/".join(map(str, path))`` is its key)."""
        if self.entry is None:
            # a user rule gives text only: read it as NNX writes its own paths
            return tuple(nm.nnx_part(p) for p in self.key.split("/"))
        return nm.nnx_path(self.entry)

    def lib_shape(self) -> tuple[int, ...]:
        return nm.layout_shape(tuple(np.shape(current(self.var))), self.src_layout,
                               self.dst_layout)

    def load_target(self) -> _load.Target:
        """This variable as the load engine takes it.

        Where the library lays the value out differently (``Conv2D.b`` is ``(C,)`` in
        Linen), an entry must have the variable's shape in the library's layout and its
        dtype before it is reshaped, so that the report speaks of the library's shapes.
        Elsewhere the variable's own check says the same, and a user rule's transform may
        change anything, so no early check is made.
        """
        spec, convert = None, self.from_lib
        if not self.by_rule:
            if self.src_layout != self.dst_layout:
                spec = _load.Spec(self.lib_shape(), dtype_of(current(self.var)))
            else:
                convert = None
        return _load.Target(self.var, self.name, (self.key,), spec, convert,
                            tuple(self.extras))


class _Targets(list):
    """The targets of one translation (a list of ``_Target``)."""

    @functools.cached_property
    def duplicates(self) -> list[str]:
        """``"  key: from A and B"`` for each library key that several variables become.

        Computed once per translation: translations are cached, and an export must not
        pay for this check again.
        """
        shared = _load.shared_names((t.name, (t.key, *t.extras)) for t in self)
        return [f"  {key}: from {' and '.join(names)}" for key, names in shared.items()]

    @functools.cached_property
    def nesting_clashes(self) -> list[tuple[str, str, str, str]]:
        """``(key, name, longer key, its name)`` for each key that another key extends.

        Cached for the reason ``duplicates`` is.
        """
        return _nesting_clashes((t.key, t.name) for t in self)


def _nesting_clashes(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """``(key, name, longer key, its name)`` for each ``(key, name)`` whose key is a
    '/'-prefix of another's (``params/a`` and ``params/a/b``)."""
    owner = dict(pairs)
    clashes = []
    for key, name in owner.items():
        cut = key.find("/")
        while cut >= 0:
            if key[:cut] in owner:
                clashes.append((key[:cut], owner[key[:cut]], key, name))
            cut = key.find("/", cut + 1)
    return clashes


def _clash_text(clashes: Iterable[tuple[str, str, str, str]], tree: str,
                indent: str = "  ") -> str:
    """Why ``tree`` cannot hold these pairs of variables, what to do, and the pairs."""
    pairs = "\n".join(f"{indent}{key} (from {name}) and {longer} (from {longer_name})"
                      for key, name, longer, longer_name in clashes)
    return (f"{tree} cannot hold both variables of each pair below: the first one's key "
            "would be a value and also the branch holding the second's; rename one of them "
            f"with a rule (bridge.interop.Rule):\n{pairs}")


# Translating names is most of a conversion's cost, and a program converts the same
# collection again and again (every checkpoint, every export): remember the last few
# translations made with the built-in rules. The key holds each variable's identity, and
# the cached targets hold the variables, so an identity cannot be reused while cached.
_TARGET_CACHE: OrderedDict[tuple, _Targets] = OrderedDict()
_TARGET_CACHE_SIZE = 32
_DEFAULT_TABLE = nm.Table(())


def _table(opts: _Options) -> nm.Table:
    return nm.Table(opts.layers) if opts.layers else _DEFAULT_TABLE


def _targets(vc: VarCollection, scheme: str, opts: _Options, style: str, mlp: bool,
             table: nm.Table, used: set[int]) -> _Targets:
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
               table: nm.Table, used: set[int]) -> _Targets:
    namer = nm.ObjaxNamer(scheme if scheme in ("nnx", "torch") else style, table)
    names = vc.names()
    out = []
    for v in vc:
        storage = storage_of(v)
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
        elif scheme in ("nnx", "torch"):
            key, dst = nm.nnx_key(entry), None
        else:
            key, extras = nm.haiku_keys(entry, table, mlp)
            dst = spec.haiku_layout if spec else None
        parts = None
        if scheme == "linen" and entry.scope is not None:
            exact = _metadata.recall(storage, _metadata.LINEN_PATH)
            if exact is not None:
                parts = (exact[0], *map(str, entry.scope), *exact[1:])
        out.append(_Target(name, storage, key, src, dst, extras, entry=entry, parts=parts))
    return _Targets(out)


def _profiles(scheme: str, opts: _Options) -> list[tuple[str, bool]]:
    if scheme == "torch":
        return [("torch", False)]
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
    dup = targets.duplicates
    if dup:
        raise ValueError(f"{what}: several variables translate to the same name; add rules "
                         "to tell them apart:\n" + "\n".join(dup))
    if scheme in _NESTED and targets.nesting_clashes:
        # Refused rather than encoded: no Linen or NNX model has a value that is also a
        # branch, and a key holding '/' (an encoding that would round-trip) fits none.
        raise ValueError(f"{what}: " + _clash_text(targets.nesting_clashes, _NESTED[scheme]))
    flat: dict[str, Any] = {}
    for t in targets:
        value = t.to_lib(current(t.var))
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
def _score(plan: _load.Plan) -> int:
    # A profile under which two variables take one entry is wrong, however well the rest
    # fits: rank it below any profile without such a clash.
    return plan.problems + 1000 * plan.conflicts


def load(vc: VarCollection, flat: Mapping[str, Any], scheme: str, strict: bool,
         rules: RulesArg, what: str, *, check: Optional[Callable[[BaseVar, Any], str]] = None,
         value_of: Callable[[Any], Any] = lambda x: x,
         ignore: Callable[[str], bool] = lambda key: False) -> LoadReport:
    """Assign the entries of ``flat`` (``{library key: leaf}``) to the variables of ``vc``.

    The naming profiles of ``scheme`` (Linen "setup"/"compact", Haiku with or without the
    "mlp" naming) are tried in turn and the one that fits best is loaded, all or nothing
    when ``strict`` (see ``bridge.state._load.apply``).

    Args:
      check: ``(variable, leaf) -> problem`` ('' when it fits), e.g. NNX variable types.
      value_of: the array a leaf holds (an ``nnx.Variable``'s value).
      ignore: keys that are not "missing" when absent (Haiku state not given).

    Returns:
      The ``LoadReport`` (variables by their collection name, entries by library key).

    Raises:
      LoadMismatchError: strict and something does not fit (nothing assigned).
    """
    vc = _as_vc(vc, what)
    opts = _options(rules)
    table = _table(opts)
    entries = [_entry(key, leaf, check, value_of) for key, leaf in flat.items()]
    best: Optional[tuple[_load.Plan, _Targets]] = None
    used: set[int] = set()
    for style, mlp in _profiles(scheme, opts):
        targets = _targets(vc, scheme, opts, style, mlp, table, used)
        plan = _load.plan([t.load_target() for t in targets
                           if t.key in flat or not ignore(t.key)], entries)
        if best is None or _score(plan) < _score(best[0]):
            best = (plan, targets)
        if _score(best[0]) == 0:
            break
    assert best is not None
    _check_rules_used(opts.rules, used, list(vc.keys()), what)
    error: Callable[..., LoadMismatchError] = LoadMismatchError
    if scheme in _NESTED:
        # A tree the library made holds at most one of two such keys, so the other is
        # "missing" however the tree is fixed: say why, and what to do instead.
        absent = [c for c in best[1].nesting_clashes if c[0] not in flat or c[2] not in flat]
        if absent:
            error = functools.partial(_nesting_error, absent, _NESTED[scheme])
    return _load.apply(best[0], what=what, strict=strict, hint=_RENAME_HINT, error=error)


def _nesting_error(clashes: list[tuple[str, str, str, str]], tree: str, report: LoadReport,
                   what: str, hint: str) -> LoadMismatchError:
    """The strict load's error, with a note on variables that ``tree`` cannot hold both."""
    error = LoadMismatchError(report, what, hint)
    error.args = (f"{error.args[0]}\n  {_clash_text(clashes, tree, indent='    ')}",)
    return error


def _entry(key: str, leaf: Any, check: Optional[Callable[[BaseVar, Any], str]],
           value_of: Callable[[Any], Any]) -> _load.Entry:
    kind = None if check is None else (lambda var: check(var, leaf))
    return _load.Entry(key, key, lambda like: value_of(leaf), check=kind)


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


def unflatten_linen(flat: Mapping[str, Any],
                    parts: Optional[Mapping[str, Sequence[str]]] = None) -> dict[str, Any]:
    """The nested Linen dict of ``flat``; ``parts`` gives the exact path of keys whose
    text is ambiguous (a name holding '/')."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *path, leaf = parts[key] if parts and key in parts else key.split("/")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flatten_haiku(params: Optional[Mapping[str, Mapping[str, Any]]],
                  state: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  what: str = "params") -> dict[str, Any]:
    """``({'linear': {'w': x}}, {'bn/~/mean_ema': {...}})`` → ``{'params/linear/w': x, ...}``."""
    return {f"{coll}/{module}/{leaf}": value
            for coll, module, leaves in _port.haiku_modules(params, state, what)
            for leaf, value in leaves.items()}


def unflatten_haiku(flat: Mapping[str, Any]) -> tuple[dict, dict]:
    params: dict[str, dict] = {}
    state: dict[str, dict] = {}
    for key, value in flat.items():
        coll, rest = key.split("/", 1)
        module, leaf = rest.rsplit("/", 1)
        (params if coll == "params" else state).setdefault(module, {})[leaf] = value
    return params, state


# ----- port -------------------------------------------------------------------------------
def port(tree: Any, from_: str, to: str, rules: RulesArg = None, like: Any = None) -> Any:
    """Translate a whole variables tree from one library's names and layouts to another's.

    Schemes and their trees:

    * ``"linen"``: the variables dict of ``init`` (``{'params': ..., 'batch_stats': ...}``;
      metadata boxes such as ``nn.LogicallyPartitioned`` are kept);
    * ``"haiku"``: ``(params, state)`` (or ``params`` alone);
    * ``"nnx"``: an ``nnx.State`` (``nnx.state(model)``) or an NNX module; the result is an
      ``nnx.State`` whose variables have their types (``nnx.Param``, ``nnx.BatchStat``) and
      metadata (sharding names);
    * ``"torch"``: a PyTorch ``state_dict`` ``{'layer1.0.conv1.weight': array}``
      (``load_safetensors(path)`` reads one without PyTorch);
    * ``"bridge"``: a ``VarCollection`` (``model.vars()``) or a module, as source; as target,
      ``like`` must be the ``VarCollection`` to fill, and the result is ``{variable name:
      array}`` (assign it with ``vc.assign``, or use the ``load_*`` converters).

    Names: only the automatic names of known layers are translated (Linen ``Dense_0``,
    ``Conv_1``, ``BatchNorm_0`` ↔ Haiku ``linear``, ``conv2_d_1``, ``batch_norm``); every
    other name (``block_group_0``, ``conv_0``, ``fc1``) stays as it is, so a round trip
    gives back the same names. Haiku's ``~`` (a child made in ``__init__``) is dropped on
    the way out of Haiku and put back by Haiku's convention (an automatically named child
    was made in ``__call__``: ``block/linear``; a named one in ``__init__``:
    ``block/~/conv_0``); NNX list indices are path parts of their own (``layers/0``).
    Leaves are renamed by the kind of module they sit in (``w``/``b`` ↔ ``kernel``/``bias``,
    ``offset`` ↔ ``bias``, ``embeddings`` ↔ ``embedding``), and layouts follow the layer
    (batch-norm vectors and statistics, attention heads, the fused LSTM, transposed-conv
    kernels, PyTorch's ``(out, in, *k)`` weights); see docs/interop.md.

    Args:
      tree: the source tree (above).
      from_: the source scheme: ``"linen"``, ``"nnx"``, ``"haiku"``, ``"torch"`` or
        ``"bridge"``.
      to: the target scheme, one of the same.
      rules: ``Rule``s on whole flat source names (``params/Dense_0/kernel``,
        ``params/linear/w``, ``layer1.0.conv1.weight``) giving whole flat target names;
        ``Layer``s (adds automatic names); the preset ``"mlp"`` (Haiku's ``hk.nets.MLP``
        names ``mlp/~/linear_k`` ↔ top-level ``Dense_k``).
      like: optional tree of the target scheme (for example the target model's ``init``
        output). The result is matched to it: names that differ only in spelling (Haiku's
        ``~``, ``layers_0`` vs ``layers/0``) take the target's, every missing, unexpected,
        mis-shaped or mis-typed entry is listed in one ``ValueError``, and it supplies what
        the source cannot: the head count of attention weights coming from Haiku or
        PyTorch, the rank of Haiku batch-norm vectors (``(1, C)`` after a dense layer;
        otherwise ``(1, 1, 1, C)``), Linen metadata boxes, NNX rng state, and which
        2-D PyTorch weights are embeddings.

    Returns:
      The tree in the target scheme. Renamed leaves are the same array objects; reshaped
      ones (batch-norm vectors, attention heads) are reshaped views; only transposes,
      splits and concatenations make new arrays.

    Raises:
      ValueError: listing every problem at once (entries that do not fit ``like``, two
        entries translating to one name, a translation that needs ``like``).

    Example::

        variables = bridge.interop.port((params, state), "haiku", "linen", like=linen_init)
        params2, state2 = bridge.interop.port(variables, "linen", "haiku")
        sd = bridge.interop.load_safetensors("resnet18.safetensors")
        variables = bridge.interop.port(sd, "torch", "linen", like=linen_init)
    """
    what = f"port({from_!r} -> {to!r})"
    for s in (from_, to):
        if s not in _port.SCHEMES:
            raise ValueError(f"{what}: unknown scheme {s!r}; expected one of "
                             f"{', '.join(map(repr, _port.SCHEMES))}.")
    opts = _options(rules)
    if to == "bridge":
        vc = _as_vc(like.vars() if hasattr(like, "vars") and callable(like.vars) else like,
                    f"{what}: like") if like is not None else None
        if vc is None:
            raise ValueError(f"{what}: pass like=model.vars(), the variables to port into.")
        return _port_into_bridge(tree, from_, vc, opts, what)
    used: set[int] = set()
    mlps = [True] if opts.mlp else ([False, True] if "haiku" in (from_, to) and like is not None
                                    else [False])
    out, problems = _port.port_tree(tree, from_, to, opts.rules, opts.layers, mlps, like, used)
    _check_rules_used(opts.rules, used, [], what)
    if problems:
        raise ValueError(f"{what}: the tree does not fit:\n" + "\n".join(problems))
    return _port.finish(to, out)


def _port_into_bridge(tree: Any, from_: str, vc: VarCollection, opts: _Options,
                      what: str) -> dict[str, Any]:
    """``{variable name: value}`` for the variables of ``vc`` from a tree of ``from_``."""
    used: set[int] = set()
    hub = _port.read_for_port(tree, from_, opts.rules, opts.layers, used)
    _check_rules_used(opts.rules, used, [], what)
    problems = list(hub.problems)
    wanted = targets_for_export(vc, "torch", None)
    by_key = {(k[0], _port.normal_path(k[1]), k[2]): k for k in hub.values}
    out: dict[str, Any] = {}
    taken: set = set()
    for t in wanted:
        path = t.nnx_path()
        coll = t.entry.coll if t.entry is not None else "params"
        key = by_key.get((coll, _port.normal_path(path[:-1]), str(path[-1])))
        if key is None:
            problems.append(f"  missing: {'/'.join(map(str, (coll, *path)))} (for {t.name})")
            continue
        taken.add(key)
        value = t.from_lib(hub.values[key])
        problem = mismatch(current(t.var), value)
        if problem:
            problems.append(f"  mismatched: {t.name} (from {hub.source[key]}): {problem}")
        out[t.name] = value
    problems += [f"  unexpected: {hub.source[k]}" for k in hub.values if k not in taken]
    if problems:
        raise ValueError(f"{what}: the tree does not fit:\n" + "\n".join(problems))
    return out
