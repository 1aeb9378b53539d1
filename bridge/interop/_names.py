"""Name translation between the object (Objax), Linen, NNX and Haiku schemes.

Every name goes through one intermediate form, an ``Entry``: a Linen-style path
(``collection``, module segments, leaf) plus the layer it belongs to, when known. Each
scheme has a reader (its names → ``Entry``) and a writer (``Entry`` → its names); value
layouts (``(C,)`` vs ``(1, C, 1, 1)`` vs ``(1, 1, 1, C)``) are converted on the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from bridge.interop._rules import HAIKU_EMA_COUNTER, LAYERS, Layer, Leaf

WRAPPERS = ("FlaxModule", "NNXModule", "HaikuModule")


class Table:
    """The layer table of one conversion: user ``Layer``s first, then the built-ins."""

    def __init__(self, extra: Sequence[Layer] = ()):
        layers = tuple(extra) + LAYERS
        self.by_objax: dict[str, Layer] = {}
        self.by_linen: dict[str, Layer] = {}
        self.by_haiku: dict[str, Layer] = {}
        for layer in layers:
            for cls in layer.objax:
                self.by_objax.setdefault(cls, layer)
            self.by_linen.setdefault(layer.linen, layer)
            self.by_haiku.setdefault(layer.haiku, layer)
        self._haiku_name = re.compile(
            "^(" + "|".join(sorted(map(re.escape, self.by_haiku), key=len, reverse=True))
            + r")(?:_(\d+))?$")

    def haiku_part(self, part: str) -> tuple[Optional[Layer], str]:
        """A Haiku module name part → (layer, Linen segment)."""
        m = self._haiku_name.match(part)
        if m:
            layer = self.by_haiku[m.group(1)]
            return layer, f"{layer.linen}_{int(m.group(2) or 0)}"
        m = re.match(r"^(.*?)(?:_(\d+))?$", part)
        base = "".join(p[:1].upper() + p[1:] for p in m.group(1).split("_"))
        return None, f"{base}_{int(m.group(2) or 0)}"

    def linen_segment(self, seg: str) -> tuple[Optional[Layer], str]:
        """A Linen compact segment → (layer, Haiku module name)."""
        m = re.match(r"^([A-Za-z]\w*?)_(\d+)$", seg)
        if not m:
            return None, seg
        cls, k = m.group(1), int(m.group(2))
        layer = self.by_linen.get(cls)
        base = layer.haiku if layer else snake(cls)
        return layer, base if k == 0 else f"{base}_{k}"


def snake(name: str) -> str:
    """Haiku's module naming: ``Conv2D`` → ``conv2_d``, ``MyBlock`` → ``my_block``,
    ``OptimizedLSTMCell`` → ``optimized_lstm_cell``."""
    # a capital starts a word after a lower-case letter or digit, or where an acronym
    # ends and a word begins (``LSTMCell``: ``lstm_cell``)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


@dataclass
class Entry:
    """One leaf in the intermediate (Linen-style) naming.

    A list index stays an ``int``: in ``path`` in the "nnx" style (the others write
    ``layers_0``), and as ``leaf`` for a variable held directly in a list. NNX keys list
    items by int and attributes by str, and ``nnx.update`` finds a key only of its kind.
    """

    coll: str
    path: tuple[Any, ...]
    leaf: Union[str, int]
    layer: Optional[Layer] = None
    spec: Optional[Leaf] = None
    drop: bool = False          # a derived Haiku EMA leaf (hidden, counter): consumed, not kept
    direct: Optional[tuple[str, str]] = None   # (scheme, key) when the name is native there
    scope: Optional[tuple[Any, ...]] = None    # a FlaxModule's own scope in the tree

    def linen_key(self) -> str:
        return "/".join((self.coll, *map(str, self.path), str(self.leaf)))


# ----- the object scheme ------------------------------------------------------------------
_TOKEN = re.compile(r"\(([^()]*)\)|\.([^.()\[\]]+)|\[(\d+)\]")


class NameError_(ValueError):
    pass


def parse_objax(name: str) -> tuple[str, list[list], Any, Optional[str]]:
    """``'(Seq)[0](Linear).w'`` → (prefix, [[key, cls], ...], leaf key, wrapper tail)."""
    start = name.find("(")
    if start < 0:
        raise NameError_(f"{name!r} is not a module variable name like '(Class).attr'.")
    prefix = name[:start].strip("./")
    nodes: list[list] = [[None, None]]
    pos = start
    while pos < len(name):
        m = _TOKEN.match(name, pos)
        if m is None:
            raise NameError_(f"cannot parse {name!r} at {name[pos:]!r}.")
        pos = m.end()
        cls, attr, index = m.groups()
        if cls is not None:
            nodes[-1][1] = cls  # consecutive classes: a transparent wrapper, keep the inner one
            if cls in WRAPPERS and name.startswith(".", pos):
                return prefix, nodes, None, name[pos + 1:]
        else:
            nodes.append([attr if attr is not None else int(index), None])
    if nodes[-1][1] is not None or len(nodes) < 2:
        raise NameError_(f"{name!r} does not end with a variable ('.attr' or '[i]').")
    leaf = nodes.pop()[0]
    return prefix, nodes, leaf, None


class ObjaxNamer:
    """Translate ``VarCollection`` names into ``Entry``s, in one style.

    (``torch``: as ``nnx``, but the items of a ``Sequential`` are indices alone, as in
    PyTorch's ``nn.Sequential``: ``downsample.0``.)

    ``setup``: attributes keep their names; a list child ``[i]`` is ``layers_i`` (inside
    a ``Sequential``, a root list or a list of lists) or ``attr_i`` (a list kept in the
    attribute ``attr``). ``compact``: every module is ``{LinenClass}_{k}``, the k-th of its
    class in its parent; lists are transparent. ``nnx``: as setup, but a list index is a
    path part of its own (``layers/0``).
    """

    def __init__(self, style: str, table: Table):
        self.style = style
        self.table = table
        self.counters: dict[str, dict[str, int]] = {}
        self.assigned: dict[str, str] = {}

    def entry(self, name: str, trainable: bool) -> Entry:
        prefix, nodes, leaf, tail = parse_objax(name)
        segs: list[Any] = [prefix] if prefix else []
        scope = prefix
        key_so_far = prefix + f"({nodes[0][1]})"
        for i in range(1, len(nodes)):
            key, cls = nodes[i]
            parent_key, parent_cls = nodes[i - 1]
            step = f".{key}" if isinstance(key, str) else f"[{key}]"
            child_key = f"{key_so_far}{step}({cls})"
            is_list = i + 1 < len(nodes) and isinstance(nodes[i + 1][0], int) or (
                i + 1 == len(nodes) and isinstance(leaf, int) and tail is None)
            if self.style == "compact" and cls in WRAPPERS:
                # a wrapped model is named by its attribute: its content is already named
                segs.append(key if isinstance(key, str) else f"layers_{key}")
            elif self.style == "compact":
                if not is_list:
                    seg = self.assigned.get(child_key)
                    if seg is None:
                        layer = self.table.by_objax.get(cls)
                        base = layer.linen if layer else cls
                        counts = self.counters.setdefault(scope, {})
                        seg = f"{base}_{counts.get(base, 0)}"
                        counts[base] = counts.get(base, 0) + 1
                        self.assigned[child_key] = seg
                    segs.append(seg)
                    scope = child_key
            elif isinstance(key, int):
                listed_by_attr = isinstance(parent_key, str) and parent_cls != "Sequential"
                if self.style in ("nnx", "torch"):
                    # PyTorch's nn.Sequential names its items by index alone
                    if not listed_by_attr and self.style == "nnx":
                        segs.append("layers")
                    segs.append(key)
                elif listed_by_attr:
                    segs[-1] = f"{segs[-1]}_{key}"
                else:
                    segs.append(f"layers_{key}")
            else:
                segs.append(key)
            key_so_far = child_key
        owner = nodes[-1][1]
        if tail is not None:
            return self._wrapped(owner, tail, tuple(segs), trainable)
        layer = self.table.by_objax.get(owner)
        if layer is not None:
            for spec in layer.leaves:
                if spec.objax == leaf:
                    coll, lname = spec.linen.split("/")
                    return Entry(coll, tuple(segs), lname, layer, spec)
        return Entry("params" if trainable else "state", tuple(segs), leaf)

    def _wrapped(self, owner: str, tail: str, segs: tuple, trainable: bool) -> Entry:
        if "/" not in tail and owner != "NNXModule":
            # the wrapper's own bookkeeping (its ``rng``): not part of the library's tree
            # (every Linen and Haiku leaf has a collection; an NNX variable held directly
            # by the root module does not)
            return Entry("", segs, tail, drop=True)
        if owner == "FlaxModule":
            coll, *rest = tail.split("/")
            entry = linen_entry("/".join((coll, *map(str, segs), *rest)), self.table)
            # the text of the scope lost its list indices' type: put it back (same text)
            scope = _split_parts(segs)
            entry.path = scope + entry.path[len(scope):]
            entry.scope = scope
            if not segs:
                entry.direct = ("linen", tail)
            return entry
        if owner == "NNXModule":
            # the wrapper names a variable by the text of its NNX path, where a list index
            # and a name made of digits look alike: read them as NNX writes list indices
            *path, leaf = map(nnx_part, tail.split("/"))
            entry = Entry("params" if trainable else "batch_stats", segs + tuple(path), leaf)
            if not segs:
                entry.direct = ("nnx", tail)
            return entry
        # HaikuModule: '<params|state>/<module>/<leaf>'
        coll, rest = tail.split("/", 1)
        module, leaf = rest.rsplit("/", 1)
        if segs:
            module = "/~/".join(map(str, segs)) + ("" if module == "~" else "/~/" + module)
        entry = haiku_entry(f"{coll}/{module}/{leaf}", self.table)
        entry.direct = ("haiku", f"{coll}/{module}/{leaf}")
        return entry


# ----- Linen / NNX ------------------------------------------------------------------------
def linen_entry(key: str, table: Table) -> Entry:
    coll, *path, leaf = key.split("/")
    layer = spec = None
    if path:
        cls = re.match(r"^(.*?)(?:_\d+)?$", path[-1]).group(1)
        layer = table.by_linen.get(cls)
        if layer is not None:
            spec = next((s for s in layer.leaves if s.linen == f"{coll}/{leaf}"), None)
            layer = layer if spec else None
    return Entry(coll, tuple(path), leaf, layer, spec)


def _split_parts(parts: Iterable[Union[str, int]]) -> tuple[Union[str, int], ...]:
    """Parts as the flat key spells them: a name holding '/' is several parts."""
    return tuple(q for p in parts for q in ([p] if isinstance(p, int) else p.split("/")))


def nnx_part(part: str) -> Union[str, int]:
    """A path part given as text, as NNX keys it: ``int`` where the text is how Python
    writes a list index (``'0'``, ``'12'``), else the text itself (``'01'``, ``'²'``,
    Arabic-Indic ``'٣'``: ``int()`` accepts them, but they cannot be written back from
    the int, so the variable could not be found again)."""
    if part.isascii() and part.isdigit() and str(int(part)) == part:
        return int(part)
    return part


def nnx_path(entry: Entry) -> tuple[Union[str, int], ...]:
    """The path of ``entry`` in an ``nnx.State``; ``"/".join(map(str, path))`` is its key."""
    return _split_parts((*entry.path, entry.leaf))


def nnx_key(entry: Entry) -> str:
    return "/".join(map(str, nnx_path(entry)))


def nnx_state_paths(paths: Sequence[tuple[Union[str, int], ...]]
                    ) -> list[tuple[Union[str, int], ...]]:
    """``paths`` with every key made a ``str`` under a parent whose keys would otherwise
    be of both kinds.

    An ``nnx.State`` mixing them cannot be sorted, so NNX cannot flatten it, and NNX never
    makes one (a list's keys are ints, a module's or a dict's strs). Such a parent is a
    dict or module whose names were read as numbers (an ``nnx.Dict`` with keys '0' and
    'a', known only by the text of the wrapper's names: str is what NNX had), or a list
    beside an attribute whose name holds '/' (``x`` and ``x/a``), which no NNX model has.
    Loads match keys by their text, so the round trip holds either way. Parents are
    settled from the root down: making a key a str can join two subtrees (``0`` and
    ``'0'``) whose own keys then meet.
    """
    out = [list(p) for p in paths]
    for depth in range(max(map(len, out), default=0)):
        kinds: dict[tuple, set[bool]] = {}
        for p in out:
            if depth < len(p):
                kinds.setdefault(tuple(p[:depth]), set()).add(isinstance(p[depth], int))
        for p in out:
            if depth < len(p) and len(kinds[tuple(p[:depth])]) > 1:
                p[depth] = str(p[depth])
    return [tuple(p) for p in out]


# ----- Haiku ------------------------------------------------------------------------------
def haiku_entry(key: str, table: Table) -> Entry:
    """``params/mlp/~/linear_0/w`` → Entry(params, (Dense_0,), kernel)."""
    coll, rest = key.split("/", 1)
    module, leaf = rest.rsplit("/", 1) if "/" in rest else ("~", rest)
    parts = [] if module == "~" else module.split("/~/")
    sub = None
    if len(parts) >= 2:
        owner, _ = table.haiku_part(parts[-2])
        if owner and any(s.haiku.startswith(f"state/{parts[-1]}/") for s in owner.leaves):
            sub = parts.pop()
    if len(parts) == 2 and parts[0] == "mlp" and re.match(r"^linear_\d+$", parts[1]):
        parts = parts[1:]  # hk.nets.MLP is transparent: mlp/~/linear_k <-> Dense_k
    segs, layer = [], None
    for part in parts:
        layer, seg = table.haiku_part(part)
        segs.append(seg)
    if layer is not None:
        want = f"{coll}/{sub}/{leaf}" if sub else f"{coll}/{leaf}"
        for spec in layer.leaves:
            if spec.haiku == want:
                lcoll, lname = spec.linen.split("/")
                return Entry(lcoll, tuple(segs), lname, layer, spec)
            if spec.ema and sub and spec.haiku.rsplit("/", 1)[0] == f"{coll}/{sub}" \
                    and leaf in ("hidden", "counter"):
                lcoll, lname = spec.linen.split("/")
                return Entry(lcoll, tuple(segs), lname, layer, spec, drop=True)
    if sub:
        segs.append(sub)
    return Entry("params" if coll == "params" else "state", tuple(segs), leaf)


def haiku_keys(entry: Entry, table: Table, mlp: bool) -> tuple[str, list[str]]:
    """Entry → (Haiku key, derived EMA keys written/consumed next to it)."""
    path = list(entry.path)
    parts = []
    if entry.layer is not None and not path:
        parts = [entry.layer.haiku]  # the root module is itself the layer
    for seg in path:
        parts.append(table.linen_segment(str(seg))[1])
    if mlp and len(path) == 1:
        m = re.match(r"^Dense_(\d+)$", str(path[0]))
        if m:
            parts = ["mlp", f"linear_{m.group(1)}"]
    if entry.spec is not None:
        coll, *sub, leaf = entry.spec.haiku.split("/")
        parts += sub
    else:
        coll, leaf = ("params" if entry.coll == "params" else "state"), entry.leaf
    module = "/~/".join(parts) if parts else "~"
    key = f"{coll}/{module}/{leaf}"
    extras = [f"{coll}/{module}/hidden", f"{coll}/{module}/counter"] if (
        entry.spec is not None and entry.spec.ema) else []
    return key, extras


def ema_extras(average: Any) -> tuple[Any, Any]:
    """(hidden, counter) for a Haiku EMA whose debiased ``average`` is given."""
    import jax.numpy as jnp
    return average, jnp.asarray(HAIKU_EMA_COUNTER, dtype=jnp.int32)


# ----- value layouts ----------------------------------------------------------------------
_DEFAULT_RANK = {"c1": 3, "1c": 4, "1..c": 4}


def layout_shape(shape: tuple[int, ...], src: Optional[str], dst: Optional[str],
                 rank: Optional[int] = None) -> tuple[int, ...]:
    """The shape that ``shape`` in layout ``src`` has in layout ``dst`` (None: Linen's)."""
    if src == dst:
        return tuple(shape)
    c = int(np.prod(shape))
    if dst is None or dst == "vec":
        return (c,)
    if rank is None:
        batch_layouts = ("1c", "1..c")
        rank = len(shape) if src in batch_layouts and dst in batch_layouts else _DEFAULT_RANK[dst]
    if dst == "c1":
        return (c,) + (1,) * (rank - 1)
    if dst == "1c":
        return (1, c) + (1,) * (rank - 2)
    return (1,) * (rank - 1) + (c,)


def relayout(x: Any, src: Optional[str], dst: Optional[str], rank: Optional[int] = None) -> Any:
    """Reshape ``x`` between layouts; the same object when nothing changes."""
    if src == dst:
        return x
    shape = layout_shape(tuple(np.shape(x)), src, dst, rank)
    return x if tuple(np.shape(x)) == shape else x.reshape(shape)
