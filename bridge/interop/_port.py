"""``port``: a whole variables tree from one library's names and layouts to another's.

Every scheme is read into one intermediate form, the *hub*, and written out of it:
``{(collection, path, leaf): value}`` with Linen's collection and leaf names, module
paths whose parts are ``str`` names or ``int`` list indices (as NNX keys them), and
values in Linen's layouts. So a new scheme needs a reader and a writer, not a converter
to every other scheme, and the layer rules (``bridge.interop._layers``) are written once,
against Linen.

Translations are lossless: a tree read and written back gives the same names and arrays,
because only the automatic names of known layers are translated (and names of one scheme
that look automatic in another are swapped with them), and leaf renames are swapped the
same way. Where a scheme does not hold what another needs (Haiku's ``~`` placement, an
attention weight's head count, NNX rng state, Linen metadata boxes), the target tree given
as ``like=`` supplies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from bridge.interop import _layers as L
from bridge.interop import _torch
from bridge.interop._rules import HAIKU_EMA_COUNTER, Layer, Rule
from bridge.state._load import _NEAREST_LIMIT, nearest
from bridge.state._variables import mismatch

__all__ = ["SCHEMES", "Hub", "finish", "port_tree", "read_bridge", "read_for_port"]

Part = Union[str, int]
Path = tuple[Part, ...]
Key = tuple[str, Path, str]

#: The schemes ``port`` reads and writes.
SCHEMES = ("linen", "nnx", "haiku", "torch", "bridge")

_LINEN_AUTO = re.compile(r"^[A-Z][A-Za-z0-9]*_\d+$")   # any Linen automatic name: Cls_k
_EMA = ("mean_ema", "var_ema")


@dataclass
class Hub:
    """The intermediate form: Linen names and layouts, plus what other schemes keep.

    ``meta[key]`` may hold ``'box'`` (a Linen metadata box, value removed), ``'nnx'``
    (``(type, metadata)`` of an NNX variable) and ``'vector'`` (the value is a per-channel
    vector that Haiku lays out as ``(1, ..., 1, C)``). ``source[key]`` is the flat source
    key, for messages. ``extra`` holds NNX rng state, which only NNX can hold.
    """

    values: dict[Key, Any] = field(default_factory=dict)
    meta: dict[Key, dict] = field(default_factory=dict)
    source: dict[Key, str] = field(default_factory=dict)
    extra: dict[Path, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    written: dict[Any, str] = field(default_factory=dict)   # target key -> source key

    def put(self, key: Key, value: Any, source: str, **meta: Any) -> None:
        if key in self.values:
            self.problems.append(f"  duplicate: {_text(key)} from both {self.source[key]} "
                                 f"and {source}")
            return
        self.values[key] = value
        self.source[key] = source
        if meta:
            self.meta[key] = meta

    def modules(self) -> dict[Path, dict[tuple[str, str], Key]]:
        """``{module path: {(collection, leaf): key}}`` in first-seen order."""
        out: dict[Path, dict[tuple[str, str], Key]] = {}
        for key in self.values:
            out.setdefault(key[1], {})[key[0], key[2]] = key
        return out


def _text(key: Key) -> str:
    return "/".join([key[0], *map(str, key[1]), key[2]])


def _part(p: str) -> Part:
    """A path part as NNX keys it: ``int`` where the text is how Python writes an index."""
    return int(p) if p.isascii() and p.isdigit() and str(int(p)) == p else p


# ----- automatic names ----------------------------------------------------------------------
@dataclass
class _Names:
    """The automatic-name table of one port (the built-ins and the user's ``Layer``s)."""

    autos: tuple[L.AutoName, ...]

    def __post_init__(self) -> None:
        self.by_linen = {a.linen: a for a in self.autos}
        self._haiku = [re.compile("^" + re.escape(a.haiku).replace(
            re.escape("{rank}"), r"(?P<rank>[123])") + r"(?:_(?P<k>[1-9]\d*))?$")
            for a in self.autos]

    def haiku_auto(self, seg: str) -> Optional[tuple[L.AutoName, int]]:
        for a, rx in zip(self.autos, self._haiku):
            m = rx.match(seg)
            if m:
                return a, int(m.group("k") or 0)
        return None

    def linen_auto(self, seg: str) -> Optional[tuple[L.AutoName, int]]:
        m = re.match(r"^(\w+?)_(\d+)$", seg)
        if m and m.group(1) in self.by_linen and str(int(m.group(2))) == m.group(2):
            return self.by_linen[m.group(1)], int(m.group(2))
        return None

    @staticmethod
    def haiku_name(a: L.AutoName, k: int, rank: int) -> str:
        base = a.haiku.replace("{rank}", str(rank))
        return base if k == 0 else f"{base}_{k}"

    def to_linen(self, seg: str, rank: int = 2) -> str:
        """A Haiku module name part -> Linen (automatic names translated, look-alikes swapped)."""
        auto = self.haiku_auto(seg)
        if auto:
            return f"{auto[0].linen}_{auto[1]}"
        auto = self.linen_auto(seg)
        if auto:
            return self.haiku_name(auto[0], auto[1], rank)
        return seg

    def to_haiku(self, seg: str, rank: int = 2) -> str:
        """The inverse of ``to_linen``."""
        auto = self.linen_auto(seg)
        if auto:
            return self.haiku_name(auto[0], auto[1], rank)
        auto = self.haiku_auto(seg)
        if auto:
            return f"{auto[0].linen}_{auto[1]}"
        return seg


def _names(layers: Sequence[Layer]) -> _Names:
    extra = tuple(L.AutoName(layer.linen, layer.haiku) for layer in layers)
    return _Names(extra + L.AUTO_NAMES)


# ----- leaf names -------------------------------------------------------------------------
def _kind(leaves: Iterable[str]) -> Optional[str]:
    """The module kind that decides leaf renames (``_layers.LEAF_NAMES``), from its leaves."""
    names = set(leaves)
    if names & {"w", "kernel"}:
        return "dense"
    if names & {"embeddings", "embedding"}:
        return "embed"
    if names & {"scale", "offset"} or (names and names <= {"bias"}):
        return "norm"
    return None


def _leaf(kind: Optional[str], leaf: str, to_linen: bool) -> str:
    table = L.LEAF_NAMES.get(kind or "", {})
    forward = table if to_linen else {v: k for k, v in table.items()}
    if leaf in forward:
        return forward[leaf]
    back = {v: k for k, v in forward.items()}
    return back.get(leaf, leaf)


def _rank(value: Any) -> int:
    return max(1, min(3, np.ndim(value) - 2))


# ----- Linen ------------------------------------------------------------------------------
def _is_box(x: Any) -> bool:
    return hasattr(x, "unbox") and hasattr(x, "replace_boxed")


def read_linen(tree: Any, **_: Any) -> Hub:
    if not isinstance(tree, Mapping):
        raise TypeError(f"expected Linen variables {{'params': {{...}}, ...}}, got "
                        f"{type(tree).__name__}.")
    hub = Hub()

    def walk(path: tuple[str, ...], node: Any) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping) and not _is_box(v):
                walk(path + (str(k),), v)
                continue
            full = path + (str(k),)
            if len(full) < 2:
                hub.problems.append(f"  not a variable: {'/'.join(full)} (a collection "
                                    "holds dicts of arrays)")
                continue
            meta = {}
            if _is_box(v):
                meta["box"] = v.replace_boxed(None)
                v = v.unbox()
            key = (full[0], tuple(_part(p) for p in full[1:-1]), full[-1])
            hub.put(key, v, "/".join(full), **meta)
    walk((), tree)
    return hub


def write_linen(hub: Hub) -> dict[Any, Any]:
    """``{(collection, *path, leaf): value}`` (all parts ``str``), boxes put back."""
    out = {}
    for key, value in hub.values.items():
        box = hub.meta.get(key, {}).get("box")
        nnx_meta = hub.meta.get(key, {}).get("nnx")
        if box is not None:
            value = box.replace_boxed(value)
        elif nnx_meta is not None:
            from bridge.flax import _nnx_types
            value = _nnx_types.nnx_metadata_to_linen_box(value, nnx_meta[1]) or value
        target = (key[0], *map(str, key[1]), key[2])
        out[target] = value
        hub.written[target] = hub.source[key]
    return out


def _nest(flat: Mapping[tuple, Any]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


# ----- Haiku ------------------------------------------------------------------------------
def _haiku_parts(module: str) -> tuple[str, ...]:
    return tuple(p for p in module.split("/") if p != "~") if module != "~" else ()


def haiku_modules(params: Optional[Mapping], state: Optional[Mapping], what: str
                  ) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    """``(collection, module name, {leaf: value})`` of Haiku ``params`` and ``state``
    (either may be ``None``), checking that both are ``{module name: {name: array}}``."""
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
            yield coll, module, leaves


def read_haiku(tree: Any, names: _Names, hints: Mapping[Key, tuple], mlp: bool = False
               ) -> Hub:
    params, state = (tree if isinstance(tree, tuple) and len(tree) == 2 else (tree, None))
    hub = Hub()
    raw: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    src: dict[tuple[str, tuple[str, ...], str], str] = {}
    literal: set[tuple[str, ...]] = set()   # hk.nets.MLP layers under the "mlp" preset
    for coll, module, leaves in haiku_modules(params, state, "tree"):
        parts = _haiku_parts(module)
        if mlp and len(parts) == 2 and parts[0] == "mlp" and re.match(r"^linear_\d+$",
                                                                      parts[1]):
            parts = ("Dense_" + parts[1].split("_")[1],)
            literal.add(parts)
        for leaf, value in leaves.items():
            raw.setdefault((coll, parts), {})[leaf] = value
            src[coll, parts, leaf] = f"{coll}/{module}/{leaf}"
    params_of = {parts: leaves for (coll, parts), leaves in raw.items() if coll == "params"}
    done: set[tuple[str, tuple[str, ...]]] = set()

    def linen_path(parts: tuple[str, ...], rank: int = 2) -> Path:
        if parts in literal:
            return tuple(parts)
        return tuple(_part(names.to_linen(p, rank if i == len(parts) - 1 else 2))
                     for i, p in enumerate(parts))

    # batch norms: a module with a mean_ema or var_ema child in the state
    bns = {parts[:-1]: None for coll, parts in raw if coll == "state" and parts
           and parts[-1] in _EMA}
    for bn in bns:
        path = linen_path(bn)
        for ema, stat in zip(_EMA, ("mean", "var")):
            if ("state", bn + (ema,)) not in raw:
                continue
            entry = raw["state", bn + (ema,)]
            done.add(("state", bn + (ema,)))
            for leaf, value in entry.items():
                source = src["state", bn + (ema,), leaf]
                if leaf == "average":
                    hub.put(("batch_stats", path, stat), _vector(value), source, vector=True)
                elif leaf not in ("hidden", "counter"):
                    hub.put(("state", path + (ema,), leaf), value, source)
        for leaf, value in params_of.get(bn, {}).items():
            name = {"offset": "bias"}.get(leaf, leaf if leaf != "bias" else "offset")
            hub.put(("params", path, name), _vector(value), src["params", bn, leaf],
                    vector=True)
        done.add(("params", bn))

    # structures (attention, LSTM): modules holding no leaves of their own
    for parts in _parents(params_of):
        for s in L.STRUCTURES:
            module = _structure_module(parts, params_of, s, names)
            if module is None:
                continue
            path = linen_path(parts)
            shapes = {f"{c}/{leaf}": hints[k] for k in hints
                      if len(k[1]) == len(path) + 1 and _same_path(k[1][:-1], path)
                      for c, leaf in [(k[1][-1], k[2])]}
            try:
                linen = s.to_linen(module, shapes)
            except Exception as e:  # noqa: BLE001 - only the needs-like marker is expected
                reason = L.needs_like(e)
                if reason is None:
                    raise
                hub.problems.append(f"  {'/'.join(map(str, path)) or '(root)'}: {reason}; "
                                    "pass like= (the target model's variables)")
                for child in s.haiku_children:
                    done.add(("params", parts + (child,)))
                break
            for child in s.haiku_children:
                done.add(("params", parts + (child,)))
            source = f"params/{'/'.join(parts)} ({s.name})"
            for name, value in linen.items():
                child, leaf = name.split("/")
                hub.put(("params", path + (child,), leaf), value, source)
            break

    for (coll, parts), leaves in raw.items():
        if (coll, parts) in done:
            continue
        kind = _kind(leaves) if coll == "params" else None
        rank = _rank(leaves.get("w", leaves.get("kernel", np.zeros((1, 1, 1, 1)))))
        path = linen_path(parts, rank)
        transposed = bool(parts) and _is_transpose(names, parts[-1])
        for leaf, value in leaves.items():
            name = _leaf(kind, leaf, to_linen=True)
            if transposed and name == "kernel":
                value = _swap_io(value)
            hub.put(("params" if coll == "params" else "state", path, name), value,
                    src[coll, parts, leaf])
    return hub


def _parents(paths: Iterable[tuple]) -> list[tuple]:
    """Every proper prefix of ``paths`` (the modules that may hold children), in order."""
    out: dict[tuple, None] = {}
    for p in paths:
        for i in range(len(p)):
            out.setdefault(tuple(p[:i]), None)
    return list(out)


def _same_path(a: Path, b: Path) -> bool:
    return tuple(map(str, a)) == tuple(map(str, b))


def _structure_module(parts: tuple[str, ...], params_of: Mapping, s: L.Structure,
                      names: _Names) -> Optional[dict]:
    """The Haiku module at ``parts`` as ``{'child/leaf': value}`` if it is structure ``s``."""
    if parts in params_of:
        return None  # a structure holds no leaves of its own
    children = {p[len(parts)] for p in params_of
                if len(p) == len(parts) + 1 and p[:len(parts)] == parts}
    deeper = any(len(p) > len(parts) + 1 and p[:len(parts)] == parts for p in params_of)
    if children != set(s.haiku_children) or deeper:
        return None
    if s.haiku_names:
        seg = parts[-1] if parts else ""
        auto = names.haiku_auto(seg) or names.linen_auto(seg)
        base = re.sub(r"_\d+$", "", seg)
        if not (auto and (auto[0].haiku in s.haiku_names or auto[0].linen in s.haiku_names)
                or base in s.haiku_names):
            return None
    return {f"{c}/{leaf}": v for c in children for leaf, v in params_of[parts + (c,)].items()}


def _is_transpose(names: _Names, seg: str) -> bool:
    auto = names.haiku_auto(seg)
    return bool(auto) and auto[0].linen == "ConvTranspose"


def _swap_io(x: Any) -> Any:
    return x.swapaxes(-1, -2) if hasattr(x, "swapaxes") else np.swapaxes(x, -1, -2)


def _vector(x: Any) -> Any:
    return x.reshape(-1) if np.ndim(x) != 1 else x


def write_haiku(hub: Hub, names: _Names, mlp: bool = False) -> dict[Any, Any]:
    """``{(collection, module name, leaf): value}``."""
    out: dict[Any, Any] = {}
    origin: dict[Any, Key] = {}
    modules = hub.modules()

    def put(key: tuple, value: Any, source: Key) -> None:
        if key in out:
            hub.problems.append(f"  duplicate: {key[0]}/{key[1]}/{key[2]} from both "
                                f"{hub.source[origin[key]]} and {hub.source[source]}")
            return
        out[key] = value
        origin[key] = source
        hub.written[key] = hub.source[source]

    def module_name(path: Path, rank: int = 2, internal: int = 0) -> str:
        if mlp and len(path) == 1 and re.match(r"^Dense_\d+$", str(path[0])):
            return "mlp/~/linear_" + str(path[0]).split("_")[1]
        name = ""
        for i, p in enumerate(path):
            text = names.to_haiku(str(p), rank if i == len(path) - 1 else 2)
            if i == 0:
                name = text
            elif _LINEN_AUTO.match(str(p)) or i >= len(path) - internal:
                name += "/" + text
            else:
                name += "/~/" + text
        return name or "~"

    structured: set[Path] = set()
    for path in _parents(modules):
        for s in L.STRUCTURES:
            module, keys = _linen_structure(path, modules, hub, s)
            if module is None:
                continue
            converted = s.to_haiku(module)
            base = module_name(path)
            for name, value in converted.items():
                child, leaf = name.split("/")
                put(("params", f"{base}/{child}", leaf), value, keys[0])
            structured.update(p for p in modules if p[:len(path)] == path and p != path)
            break
    for path, leaves in modules.items():
        if path in structured:
            continue
        is_bn = ("batch_stats", "mean") in leaves or ("batch_stats", "var") in leaves
        kernel = next((hub.values[k] for (c, leaf), k in leaves.items() if leaf == "kernel"),
                      None)
        rank = _rank(kernel) if kernel is not None else 2
        name = module_name(path, rank)
        transposed = bool(path) and names.linen_auto(str(path[-1])) is not None and \
            names.linen_auto(str(path[-1]))[0].linen == "ConvTranspose"
        kind = _kind(leaf for (c, leaf) in leaves if c == "params")
        for (coll, leaf), key in leaves.items():
            value = hub.values[key]
            if is_bn and coll == "batch_stats" and leaf in ("mean", "var"):
                ema = f"{name}/~/{_EMA[0] if leaf == 'mean' else _EMA[1]}"
                avg = _haiku_vector(value)
                put(("state", ema, "average"), avg, key)
                hidden, counter = _ema_extras(avg)
                put(("state", ema, "hidden"), hidden, key)
                put(("state", ema, "counter"), counter, key)
            elif is_bn and coll == "params":
                hleaf = {"bias": "offset", "offset": "bias"}.get(leaf, leaf)
                put(("params", name, hleaf), _haiku_vector(value), key)
            elif coll == "params":
                hleaf = _leaf(kind, leaf, to_linen=False)
                put(("params", name, hleaf), _swap_io(value) if transposed and
                    leaf == "kernel" else value, key)
            elif coll == "state" and len(path) and str(path[-1]) in _EMA:
                put(("state", module_name(path[:-1]) + "/~/" + str(path[-1]), leaf), value,
                    key)
            else:
                put(("state", name, leaf), value, key)
    return out  # NNX rng state (hub.extra) has no place in Haiku, as in Linen


def _linen_structure(path: Path, modules: Mapping[Path, Mapping], hub: Hub, s: L.Structure,
                     nnx_names: bool = False) -> tuple[Optional[dict], list[Key]]:
    if path in modules:
        return None, []
    children = {p[len(path)] for p in modules if len(p) == len(path) + 1 and p[:len(path)] == path}
    deeper = any(len(p) > len(path) + 1 and p[:len(path)] == path for p in modules)
    want = set(s.linen_children)
    if nnx_names:
        rename = L.NNX_CHILD_NAMES.get(s.name, {})
        want = {rename.get(c, c) for c in want}
    if children != want or deeper:
        return None, []
    back = {v: k for k, v in L.NNX_CHILD_NAMES.get(s.name, {}).items()} if nnx_names else {}
    module, keys = {}, []
    for c in sorted(children, key=str):
        for (coll, leaf), key in modules[path + (c,)].items():
            if coll != "params":
                return None, []
            module[f"{back.get(c, c)}/{leaf}"] = hub.values[key]
            keys.append(key)
    return module, keys


def _haiku_vector(x: Any, rank: int = 4) -> Any:
    return x.reshape((1,) * (rank - 1) + (-1,))


def _ema_extras(average: Any) -> tuple[Any, Any]:
    import jax.numpy as jnp
    return average, jnp.asarray(HAIKU_EMA_COUNTER, dtype=jnp.int32)


def _unflatten_haiku(flat: Mapping[tuple, Any]) -> tuple[dict, dict]:
    params: dict = {}
    state: dict = {}
    for (coll, module, leaf), value in flat.items():
        (params if coll == "params" else state).setdefault(module, {})[leaf] = value
    return params, state


# ----- NNX --------------------------------------------------------------------------------
def read_nnx(tree: Any, **_: Any) -> Hub:
    from flax import nnx

    from bridge.flax import _nnx_types
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree)
    if not isinstance(tree, (nnx.State, Mapping)):
        raise TypeError(f"expected an nnx.State (nnx.state(model)), got {type(tree).__name__}.")
    hub = Hub()
    pairs = list(nnx.traversals.flatten_to_sequence(tree))
    lstm_paths = _nnx_lstm_paths([p for p, _ in pairs])
    for path, var in pairs:
        text = "/".join(map(str, path))
        if not isinstance(var, nnx.Variable):
            hub.put(("params", tuple(path[:-1]), str(path[-1])), var, text)
            continue
        coll = _nnx_types.collection(type(var))
        if coll is None:
            hub.extra[tuple(path)] = var
            continue
        mpath = tuple(path[:-1])
        if len(mpath) >= 1 and mpath[:-1] in lstm_paths and mpath[-1] == "if_":
            mpath = mpath[:-1] + ("if",)
        value = var.get_value()
        hub.put((coll, mpath, str(path[-1])), value, text,
                nnx=(type(var), _nnx_types.metadata(var)))
    return hub


def _nnx_lstm_paths(paths: Sequence[tuple]) -> set[Path]:
    want = {"ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"}
    parents: dict[Path, set] = {}
    for p in paths:
        if len(p) >= 2:
            parents.setdefault(tuple(p[:-2]), set()).add(p[-2])
    return {k for k, v in parents.items() if v == want}


def write_nnx(hub: Hub) -> dict[Any, Any]:
    """``{path: nnx.Variable}`` (rng state from ``hub.extra``, or from ``like``)."""
    from bridge.flax import _nnx_types
    out: dict[Any, Any] = {}
    modules = hub.modules()
    lstm = {p for p in _parents(modules) for s in L.STRUCTURES if s.name == "LSTM"
            and _linen_structure(p, modules, hub, s)[0] is not None}
    rename = L.NNX_CHILD_NAMES["LSTM"]
    for key, value in hub.values.items():
        coll, path, leaf = key
        if path and path[:-1] in lstm and path[-1] in rename:
            path = path[:-1] + (rename[path[-1]],)
        meta = hub.meta.get(key, {})
        if "nnx" in meta:
            kind, md = meta["nnx"]
        else:
            kind = _nnx_types.variable_type(coll)
            box = meta.get("box")
            md = _nnx_types.linen_box_to_nnx_metadata(box) if box is not None else {}
        out[tuple(path) + (leaf,)] = _nnx_types.make(kind, value, md)
        hub.written[tuple(path) + (leaf,)] = hub.source[key]
    for path, var in hub.extra.items():
        out.setdefault(path, var)
    return out


# ----- PyTorch and bridge -------------------------------------------------------------------
def read_torch(tree: Any, hints_kinds: Optional[Mapping[Path, str]] = None, **_: Any) -> Hub:
    if not isinstance(tree, Mapping):
        raise TypeError(f"expected a PyTorch state_dict {{name: array}}, got "
                        f"{type(tree).__name__}.")
    kinds = {}
    if hints_kinds:
        for name in tree:
            path, _ = _torch._split(name)
            kind = hints_kinds.get(_normal(path))
            if kind:
                kinds[path] = kind
    values, _dropped = _torch.read_torch(tree, kinds)
    hub = Hub()
    for key, value in values.items():
        hub.put(key, value, ".".join([*map(str, key[1]), key[2]]),
                **({"vector": True} if key[0] == "batch_stats" else {}))
    return hub


def write_torch(hub: Hub) -> dict[Any, Any]:
    return _torch.write_torch(hub.values)


def read_bridge(tree: Any, **_: Any) -> Hub:
    from bridge.interop._engine import targets_for_export
    from bridge.state import TrainVar
    from bridge.state._access import current
    vc = tree.vars() if hasattr(tree, "vars") and callable(tree.vars) else tree
    hub = Hub()
    for t in targets_for_export(vc, "torch", None):
        path = t.nnx_path()
        coll = t.entry.coll if t.entry is not None else (
            "params" if isinstance(t.var, TrainVar) else "state")
        hub.put((coll, tuple(path[:-1]), str(path[-1])), t.to_lib(current(t.var)), t.name)
    return hub


# ----- like: names and shapes of the target ---------------------------------------------
def _normal(path: Sequence[Part]) -> tuple[str, ...]:
    """A path as several schemes spell it alike: no Haiku ``~``, list items ``name_i``
    (``layers_i`` at the root, as Linen's ``nn.Sequential`` names its layers)."""
    out: list[str] = []
    for p in path:
        p = _part(p) if isinstance(p, str) else p
        if p == "~":
            continue
        if isinstance(p, int):
            # an item of a list attribute is name_i in Linen; of a root list or a
            # Sequential, layers_i (nn.Sequential's own naming)
            out[-1:] = [f"{out[-1]}_{p}"] if out else [f"layers_{p}"]
        else:
            out.append(str(p))
    return tuple(out)


def _flat_text(scheme: str, key: Any) -> str:
    if scheme == "haiku":
        return "/".join(key)
    if scheme == "torch":
        return key
    return "/".join(map(str, key))


def _parse_target(scheme: str, text: str) -> Any:
    if scheme == "haiku":
        coll, rest = text.split("/", 1)
        module, leaf = rest.rsplit("/", 1)
        return (coll, module, leaf)
    if scheme == "torch":
        return text
    if scheme == "nnx":
        return tuple(_part(p) for p in text.split("/"))
    return tuple(text.split("/"))


def _normal_key(scheme: str, key: Any) -> tuple:
    """``(collection or '', normal module path, leaf)`` of a flat key of ``scheme``."""
    if scheme == "haiku":
        return key[0], _normal(key[1].split("/")), key[2]
    if scheme == "torch":
        *path, leaf = key.split(".")
        return "", _normal([_part(p) for p in path]), leaf
    if scheme == "linen":
        return key[0], _normal([_part(p) for p in key[1:-1]]), key[-1]
    return "", _normal(key[:-1]), str(key[-1])


def _flatten_target(scheme: str, tree: Any) -> dict[Any, Any]:
    """The flat form ``write_*`` produces, of a tree of ``scheme`` (``like=``)."""
    if scheme == "linen":
        flat = {}

        def walk(path: tuple, node: Any) -> None:
            for k, v in node.items():
                if isinstance(v, Mapping) and not _is_box(v):
                    walk(path + (str(k),), v)
                else:
                    flat[path + (str(k),)] = v
        walk((), tree)
        return flat
    if scheme == "haiku":
        params, state = tree if isinstance(tree, tuple) and len(tree) == 2 else (tree, {})
        return {(coll, module, leaf): v for coll, t in (("params", params), ("state", state))
                for module, leaves in (t or {}).items() for leaf, v in leaves.items()}
    if scheme == "nnx":
        from flax import nnx
        if isinstance(tree, nnx.Module):
            tree = nnx.state(tree)
        return {tuple(p): v for p, v in nnx.traversals.flatten_to_sequence(tree)}
    return dict(tree)


def _leaf_value(x: Any) -> Any:
    if _is_box(x):
        return x.unbox()
    if hasattr(x, "get_value") and hasattr(x, "get_metadata"):
        return x.get_value()
    return x


# ----- the port -------------------------------------------------------------------------
_READERS: dict[str, Callable[..., Hub]] = {"linen": read_linen, "haiku": read_haiku,
                                           "nnx": read_nnx, "torch": read_torch,
                                           "bridge": read_bridge}
_WRITERS: dict[str, Callable[..., dict]] = {"linen": write_linen, "haiku": write_haiku,
                                            "nnx": write_nnx, "torch": write_torch}


def _read(scheme: str, tree: Any, names: _Names, hints: Mapping[Key, tuple],
          kinds: Mapping, mlp: bool) -> Hub:
    if scheme == "haiku":
        return read_haiku(tree, names, hints, mlp)
    if scheme == "torch":
        return read_torch(tree, kinds)
    return _READERS[scheme](tree)


def _write(scheme: str, hub: Hub, names: _Names, mlp: bool) -> dict:
    if scheme == "haiku":
        return write_haiku(hub, names, mlp)
    return _WRITERS[scheme](hub)


def read_for_port(tree: Any, from_: str, rules: Sequence[Rule], layers: Sequence[Layer],
                  used: set[int]) -> Hub:
    """The hub of ``tree`` (user rules may only drop entries here: their targets are
    names of another scheme)."""
    if rules:
        tree, ruled, _ = _apply_rules(tree, from_, "linen", rules, used)
    return _read(from_, tree, _names(layers), {}, {}, mlp=False)


def normal_path(path: Sequence[Part]) -> tuple[str, ...]:
    """``path`` spelled the same whichever scheme it came from (see ``_normal``)."""
    return _normal(path)


def port_tree(tree: Any, from_: str, to: str, rules: Sequence[Rule], layers: Sequence[Layer],
              mlp_choices: Sequence[bool], like: Any, used: set[int]) -> tuple[Any, list[str]]:
    """``(tree in scheme to, problems)`` for the best of the "mlp" choices."""
    names = _names(layers)
    like_flat = _flatten_target(to, like) if like is not None else None
    hints: dict[Key, tuple] = {}
    kinds: dict[tuple[str, ...], str] = {}
    if like is not None:
        like_hub = _read(to, like, names, {}, {}, mlp=False) if to != "haiku" else \
            read_haiku(like, names, {}, False)
        hints = {k: tuple(np.shape(v)) for k, v in like_hub.values.items()}
        for key in like_hub.values:
            if key[2] == "embedding":
                kinds[_normal(key[1])] = "embedding"
    best: Optional[tuple[Any, list[str]]] = None
    for mlp in mlp_choices:
        out, problems = _port_once(tree, from_, to, rules, names, mlp, hints, kinds,
                                   like_flat, used)
        if best is None or len(problems) < len(best[1]):
            best = (out, problems)
        if not problems:
            break
    assert best is not None
    return best


def _port_once(tree: Any, from_: str, to: str, rules: Sequence[Rule], names: _Names,
               mlp: bool, hints: Mapping[Key, tuple], kinds: Mapping,
               like_flat: Optional[Mapping], used: set[int]) -> tuple[dict, list[str]]:
    ruled: dict[Any, Any] = {}
    ruled_from: dict[Any, str] = {}
    if rules:
        tree, ruled, ruled_from = _apply_rules(tree, from_, to, rules, used)
    hub = _read(from_, tree, names, hints, kinds, mlp)
    problems = list(hub.problems)
    out = _write(to, hub, names, mlp)
    problems += hub.problems[len(problems):]
    origin = dict(hub.written)
    for k, v in ruled.items():
        if k in out:
            problems.append(f"  duplicate: {_flat_text(to, k)} from both {origin[k]} and "
                            f"{ruled_from[k]}")
        out[k] = v
        origin[k] = ruled_from[k]
    if to in _NESTED:
        problems += _nesting_problems(out, origin, to)
    if like_flat is not None:
        out = _fit_to_like(out, origin, to, like_flat, problems)
    return out, problems


_NESTED = {"linen": "a Linen variables dict", "nnx": "an nnx.State"}


def _nesting_problems(out: Mapping[tuple, Any], origin: Mapping, to: str) -> list[str]:
    """Entries whose path another entry extends (``params/x`` and ``params/x/b``)."""
    keys = set(out)
    found = []
    for key in out:
        for cut in range(1, len(key)):
            if key[:cut] in keys:
                short = key[:cut]
                found.append(f"  nested: {_flat_text(to, short)} (from {origin.get(short)}) and "
                             f"{_flat_text(to, key)} (from {origin.get(key)}): {_NESTED[to]} "
                             "cannot hold both; rename one with a rule (bridge.interop.Rule)")
    return found


def _apply_rules(tree: Any, from_: str, to: str, rules: Sequence[Rule], used: set[int]
                 ) -> tuple[Any, dict, dict]:
    """Take the entries that a user rule matches out of ``tree``: ``(rest, {target key:
    value}, {target key: source text})``."""
    flat = _flatten_target(from_, tree) if from_ != "bridge" else None
    if flat is None:
        return tree, {}, {}
    keep, ruled, ruled_from = {}, {}, {}
    for key, value in flat.items():
        text = _flat_text(from_, key)
        hit = next(((r, t) for r in rules for m, t in [r.apply(text)] if m), None)
        if hit is None:
            keep[key] = value
            continue
        used.add(id(hit[0]))
        if hit[1] is None:
            continue
        value = _leaf_value(value)
        target = _parse_target(to, hit[1])
        ruled[target] = hit[0].transform(value) if hit[0].transform else value
        ruled_from[target] = text
    return _rebuild(from_, keep), ruled, ruled_from


def _rebuild(scheme: str, flat: Mapping[Any, Any]) -> Any:
    if scheme == "linen":
        return _nest(flat)
    if scheme == "haiku":
        return _unflatten_haiku(flat)
    if scheme == "nnx":
        from flax import nnx
        return nnx.State(_nest(flat)) if flat else nnx.State({})
    return dict(flat)


def _fit_to_like(out: dict, origin: dict, to: str, like: Mapping, problems: list[str]) -> dict:
    """Match ``out`` to the target's own names and layouts; list what does not fit."""
    missing = [k for k in like if k not in out]
    unexpected = [k for k in out if k not in like]
    if missing and unexpected:
        by_normal: dict[tuple, list] = {}
        for k in missing:
            by_normal.setdefault(_normal_key(to, k), []).append(k)
        renamed = {}
        for k in unexpected:
            candidates = by_normal.get(_normal_key(to, k), [])
            if len(candidates) == 1:
                renamed[k] = candidates[0]
        if renamed:
            out = {renamed.get(k, k): v for k, v in out.items()}
            origin = {renamed.get(k, k): v for k, v in origin.items()}
            missing = [k for k in like if k not in out]
            unexpected = [k for k in out if k not in like]
    if to == "nnx":
        for k in list(missing):
            if _is_rng_state(like[k]):
                out[k] = like[k]
                missing.remove(k)
    texts_missing = [_flat_text(to, k) for k in missing]
    texts_unexpected = [_flat_text(to, k) for k in unexpected]
    for i, text in enumerate(texts_missing):
        near = nearest(text, texts_unexpected) if i < _NEAREST_LIMIT else ""
        problems.append(f"  missing: {text}{near}")
    for i, (k, text) in enumerate(zip(unexpected, texts_unexpected)):
        near = nearest(text, texts_missing) if i < _NEAREST_LIMIT else ""
        src = f" (from {origin[k]})" if origin.get(k) else ""
        problems.append(f"  unexpected: {text}{src}{near}")
    for k, v in list(out.items()):
        if k not in like:
            continue
        want, have = _leaf_value(like[k]), _leaf_value(v)
        if np.shape(want) != np.shape(have) and np.size(want) == np.size(have) \
                and _is_vector_layout(np.shape(want), np.shape(have)):
            have = have.reshape(np.shape(want))
            out[k] = _rewrap(v, have)
            if to == "haiku" and k[2] == "average":
                hidden = (k[0], k[1], "hidden")
                if hidden in out:
                    out[hidden] = have
        problem = mismatch(want, have)
        if problem:
            src = f" (from {origin[k]})" if origin.get(k) else ""
            problems.append(f"  mismatched: {_flat_text(to, k)}{src}: {problem}")
        elif to == "linen" and _is_box(like[k]) and not _is_box(out[k]):
            out[k] = like[k].replace_boxed(have)
        elif to == "nnx":
            out[k] = _with_like_metadata(out[k], like[k])
    return out


def _is_vector_layout(a: tuple, b: tuple) -> bool:
    """Both shapes are one channel axis padded with ones (``(C,)``, ``(1, 1, 1, C)``)."""
    return sum(d != 1 for d in a) <= 1 and sum(d != 1 for d in b) <= 1


def _rewrap(old: Any, value: Any) -> Any:
    if _is_box(old):
        return old.replace_boxed(value)
    if hasattr(old, "get_value") and hasattr(old, "replace"):
        return old.replace(value=value)
    return value


def _with_like_metadata(var: Any, like: Any) -> Any:
    """``var``, with ``like``'s sharding names where ``var`` has none (a Haiku source)."""
    from bridge.flax import _nnx_types
    if not (hasattr(var, "get_metadata") and hasattr(like, "get_metadata")):
        return var
    if _nnx_types.sharding_names(_nnx_types.metadata(var)) is not None or \
            _nnx_types.sharding_names(_nnx_types.metadata(like)) is None:
        return var
    return _nnx_types.make(type(var), var.get_value(), {**_nnx_types.metadata(var),
                                                       **_nnx_types.metadata(like)})


def _is_rng_state(x: Any) -> bool:
    from bridge.flax import _nnx_types
    return hasattr(x, "get_metadata") and _nnx_types.collection(type(x)) is None


def finish(scheme: str, flat: Mapping[Any, Any]) -> Any:
    """The tree of ``scheme`` holding ``flat`` (what ``port`` returns)."""
    if scheme == "linen":
        return _nest(flat)
    if scheme == "haiku":
        return _unflatten_haiku(flat)
    if scheme == "nnx":
        from flax import nnx
        return nnx.from_flat_state(flat) if flat else nnx.State({})
    return dict(flat)
