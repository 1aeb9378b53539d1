"""PyTorch ``state_dict`` names and layouts ↔ the hub (the scheme-neutral form of ``port``).

A hub is a dict ``{(collection, path, leaf): value}``: ``collection`` a Linen collection
(``'params'``, ``'batch_stats'``), ``path`` a tuple of module names (``str``) and list
indices (``int``), ``leaf`` a Linen leaf name (``'kernel'``, ``'bias'``, ``'scale'``,
``'mean'``, ``'var'``, ``'embedding'``), ``value`` an array in Linen's layout.

PyTorch names a tensor ``module.path.leaf`` (``layer1.0.conv1.weight``); the kind of
layer is not in the name, so it is found from the module's leaves and the weight's rank:

=============  ==============================  ====================================
kind           PyTorch leaves                  hub leaves
=============  ==============================  ====================================
linear         ``weight`` (out, in), ``bias``  ``params/kernel`` (in, out), ``bias``
conv           ``weight`` (out, in, *k)        ``params/kernel`` (*k, in, out)
norm           ``weight`` (C,), ``bias``       ``params/scale``, ``params/bias``
batch_norm     + ``running_mean``,             + ``batch_stats/mean``,
               ``running_var`` (C,)            ``batch_stats/var``
embedding      ``weight`` (num, features)      ``params/embedding`` (same layout)
=============  ==============================  ====================================

This module imports neither PyTorch nor Flax: NumPy, and ``safetensors`` (lazily) to read
and write ``.safetensors`` files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np

from bridge._optional import import_optional

__all__ = ["KINDS", "load_safetensors", "read_torch", "save_safetensors", "write_torch"]

Path = tuple[Union[str, int], ...]
HubKey = tuple[str, Path, str]

#: The layer kinds ``read_torch``'s ``kinds`` argument accepts.
KINDS = ("linear", "conv", "norm", "batch_norm", "embedding")

_NUM_BATCHES = "num_batches_tracked"
# PyTorch leaf -> hub (collection, leaf), per kind; the weight of linear/conv is moved too.
_TO_HUB = {
    "linear": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "conv": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
    "norm": {"weight": ("params", "scale"), "bias": ("params", "bias")},
    "batch_norm": {"weight": ("params", "scale"), "bias": ("params", "bias"),
                   "running_mean": ("batch_stats", "mean"),
                   "running_var": ("batch_stats", "var")},
    "embedding": {"weight": ("params", "embedding")},
}
_FROM_HUB = {kind: {hub: leaf for leaf, hub in table.items()} for kind, table in _TO_HUB.items()}
# The ranks of ``weight`` that each kind accepts.
_WEIGHT_RANKS = {"linear": (2,), "conv": (3, 4, 5), "norm": (1,), "batch_norm": (1,),
                 "embedding": (2,)}


# ----- names ------------------------------------------------------------------------------
def _split(key: str) -> tuple[Path, str]:
    """``'layer1.0.conv1.weight'`` → ``(('layer1', 0, 'conv1'), 'weight')``.

    A part is an ``int`` when it is one written plainly (``'0'``, ``'12'``; not ``'01'``),
    so that ``_join`` gives the name back.
    """
    *parts, leaf = key.split(".")
    return tuple(_index(p) for p in parts), leaf


def _index(part: str) -> Union[str, int]:
    if part.isascii() and part.isdigit() and str(int(part)) == part:
        return int(part)
    return part


def _join(path: Path, leaf: str) -> str:
    return ".".join([*(str(p) for p in path), leaf])


def _group(entries: Mapping[tuple[Path, Any], Any]) -> dict[Path, dict]:
    """``{(path, leaf): value}`` as ``{path: {leaf: value}}``, in first-seen order."""
    modules: dict[Path, dict] = {}
    for key, value in entries.items():
        path, leaf = key
        modules.setdefault(path, {})[leaf] = value
    return modules


# ----- layouts ----------------------------------------------------------------------------
def _rank(value: Any) -> int:
    return len(np.shape(value))


def _conv_to_hub(weight: Any) -> Any:
    """(out, in, *k) → (*k, in, out)."""
    n = _rank(weight)
    return np.transpose(weight, (*range(2, n), 1, 0))


def _conv_from_hub(kernel: Any) -> Any:
    """(*k, in, out) → (out, in, *k)."""
    n = _rank(kernel)
    return np.transpose(kernel, (n - 1, n - 2, *range(n - 2)))


def _torch_kind(path: Path, leaves: Mapping[str, Any],
                kinds: Mapping[Path, str]) -> Optional[str]:
    if path in kinds:
        kind = kinds[path]
        if kind not in KINDS:
            raise ValueError(f"read_torch: unknown kind {kind!r} for module "
                             f"{_join(path, '*')!r}; expected one of {', '.join(KINDS)}.")
        if "weight" in leaves and _rank(leaves["weight"]) not in _WEIGHT_RANKS[kind]:
            raise ValueError(
                f"read_torch: {_join(path, 'weight')!r} has shape "
                f"{tuple(np.shape(leaves['weight']))}, which a {kind} layer's weight cannot "
                f"have (rank {' or '.join(map(str, _WEIGHT_RANKS[kind]))}).")
        return kind
    if "running_mean" in leaves or "running_var" in leaves:
        return "batch_norm"
    if "weight" not in leaves:
        return None
    return {1: "norm", 2: "linear", 3: "conv", 4: "conv", 5: "conv"}.get(
        _rank(leaves["weight"]))


def _hub_kind(leaves: Mapping[tuple[str, str], Any]) -> Optional[str]:
    if ("params", "embedding") in leaves:
        return "embedding"
    if ("batch_stats", "mean") in leaves or ("batch_stats", "var") in leaves:
        return "batch_norm"
    # Only ranks that read_torch reads back as the same kind, so that the round trip holds.
    if ("params", "kernel") in leaves:
        return {2: "linear", 3: "conv", 4: "conv", 5: "conv"}.get(
            _rank(leaves["params", "kernel"]))
    if ("params", "scale") in leaves and _rank(leaves["params", "scale"]) == 1:
        return "norm"
    return None


# ----- state_dict ↔ hub -------------------------------------------------------------------
def read_torch(state_dict: Mapping[str, Any],
               kinds: Optional[Mapping[Path, str]] = None) -> tuple[dict[HubKey, Any], list[str]]:
    """The hub of a PyTorch ``state_dict``, and the keys left out.

    Each key ``a.0.b.leaf`` is split into the module path ``('a', 0, 'b')`` (a part that
    is a plainly written non-negative integer becomes an ``int``, as a list index) and the
    leaf. The module's kind is found
    from its leaves: ``running_mean``/``running_var`` make a batch norm, otherwise the rank
    of ``weight`` decides (1: a norm such as ``LayerNorm``/``GroupNorm``; 2: ``Linear``;
    3 to 5: ``Conv1d``/``2d``/``3d``). Values are moved to Linen's layout:

    * linear ``weight`` (out, in) → ``('params', path, 'kernel')`` (in, out);
    * conv ``weight`` (out, in/groups, *k) → ``('params', path, 'kernel')``
      (*k, in/groups, out), e.g. OIHW → HWIO;
    * norm ``weight``/``bias`` (C,) → ``('params', path, 'scale'/'bias')``;
    * batch norm, in addition, ``running_mean``/``running_var`` (C,) →
      ``('batch_stats', path, 'mean'/'var')``;
    * embedding ``weight`` (num, features) → ``('params', path, 'embedding')``, unmoved;
    * ``bias`` of any kind → ``('params', path, 'bias')``.

    ``num_batches_tracked`` (a batch norm's step counter, which nothing in JAX uses) is
    left out and listed in the second result. Any other entry that no kind explains
    (a leaf with another name, or a ``weight`` of another rank) keeps its name as the leaf:
    ``cls_token`` → ``('params', (), 'cls_token')``. Values keep their type and dtype.

    Args:
      state_dict: ``{name: array}`` (NumPy, JAX or anything ``np.shape`` understands;
        ``load_safetensors`` gives NumPy arrays).
      kinds: ``{module path: kind}`` to override the guess, a kind among ``KINDS``
        (``'linear'``, ``'conv'``, ``'norm'``, ``'batch_norm'``, ``'embedding'``). Needed
        for ``nn.Embedding``, whose (num, features) weight looks like a ``Linear``'s.
        Paths absent from ``state_dict`` are ignored.

    Returns:
      ``(hub, dropped)``: the hub, in the order of ``state_dict``, and the
      ``num_batches_tracked`` keys left out.

    Raises:
      ValueError: an unknown kind, a ``kinds`` entry whose weight has the wrong rank, or
        two keys that land on the same hub entry.
      TypeError: a key that is not a ``str``.

    Example::

        hub, dropped = read_torch({"fc.weight": np.zeros((10, 512)), "fc.bias": np.zeros(10),
                                   "bn.running_mean": m, "bn.running_var": v,
                                   "bn.num_batches_tracked": np.array(0)})
        hub[("params", ("fc",), "kernel")].shape        # (512, 10)
        hub[("batch_stats", ("bn",), "mean")] is m      # True
        dropped                                         # ['bn.num_batches_tracked']
        read_torch({"embed.weight": w}, kinds={("embed",): "embedding"})
        # ({('params', ('embed',), 'embedding'): w}, [])
    """
    kinds = {} if kinds is None else kinds
    dropped: list[str] = []
    split: dict[tuple[Path, str], Any] = {}
    names: dict[tuple[Path, str], str] = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"read_torch: state_dict keys are str, got {name!r}.")
        path, leaf = _split(name)
        if leaf == _NUM_BATCHES:
            dropped.append(name)
            continue
        split[path, leaf] = value
        names[path, leaf] = name
    hub: dict[HubKey, Any] = {}
    sources: dict[HubKey, str] = {}
    for path, leaves in _group(split).items():
        kind = _torch_kind(path, leaves, kinds)
        table = _TO_HUB.get(kind, {})
        for leaf, value in leaves.items():
            collection, hub_leaf = table.get(leaf, ("params", leaf))
            if leaf == "weight" and kind == "linear":
                value = np.transpose(value)
            elif leaf == "weight" and kind == "conv":
                value = _conv_to_hub(value)
            key = (collection, path, hub_leaf)
            if key in hub:
                raise ValueError(f"read_torch: {names[path, leaf]!r} and {sources[key]!r} "
                                 f"would both be {_hub_text(key)}.")
            hub[key] = value
            sources[key] = names[path, leaf]
    return hub, dropped


def write_torch(hub: Mapping[HubKey, Any]) -> dict[str, Any]:
    """The PyTorch ``state_dict`` of a hub: the inverse of ``read_torch``.

    The kind of each module path is found from its hub leaves: ``embedding`` → an
    embedding; ``batch_stats`` ``mean``/``var`` → a batch norm; a ``kernel`` of rank 2 → a
    linear layer, of rank 3 to 5 → a convolution; a ``scale`` of rank 1 → a norm. Values
    are moved to PyTorch's layout:

    * linear ``kernel`` (in, out) → ``path.weight`` (out, in);
    * conv ``kernel`` (*k, in/groups, out) → ``path.weight`` (out, in/groups, *k);
    * ``scale`` → ``path.weight``; ``bias`` → ``path.bias``; ``embedding`` →
      ``path.weight``; ``mean``/``var`` → ``path.running_mean``/``path.running_var``;
    * each batch norm also gets ``path.num_batches_tracked = np.array(0, np.int64)``, so
      that PyTorch's ``load_state_dict(strict=True)`` accepts the result.

    Any other ``'params'`` leaf keeps its name and value (``('params', (), 'cls_token')``
    → ``cls_token``; a rank-6 ``kernel`` → ``path.kernel``).
    ``read_torch(write_torch(hub))`` is ``(hub, [the num_batches_tracked keys])``, given
    ``kinds`` for the embeddings.

    Args:
      hub: ``{(collection, path, leaf): value}``; ``path`` parts are ``str`` or ``int``.

    Returns:
      ``{name: array}``, in the order of ``hub`` (a module's ``num_batches_tracked`` after
      its last entry). Moved values are NumPy views or JAX arrays, as given; others are
      the hub's own values.

    Raises:
      ValueError: an entry of another collection than ``'params'`` that is not a batch
        norm statistic (PyTorch has no place for it), or two entries with the same name.
      TypeError: a key that is not ``(str, tuple, str)``.

    Example::

        sd = write_torch({("params", ("fc",), "kernel"): np.zeros((512, 10)),
                          ("params", ("fc",), "bias"): np.zeros(10)})
        sd["fc.weight"].shape    # (10, 512)
    """
    grouped: dict[tuple[Path, tuple[str, str]], Any] = {}
    for key, value in hub.items():
        if not (isinstance(key, tuple) and len(key) == 3 and isinstance(key[0], str)
                and isinstance(key[1], tuple) and isinstance(key[2], str)):
            raise TypeError(f"write_torch: a hub key is (collection, path, leaf), got {key!r}.")
        collection, path, leaf = key
        grouped[path, (collection, leaf)] = value
    out: dict[str, Any] = {}
    sources: dict[str, HubKey] = {}
    for path, leaves in _group(grouped).items():
        kind = _hub_kind(leaves)
        table = _FROM_HUB.get(kind, {})
        for (collection, leaf), value in leaves.items():
            key = (collection, path, leaf)
            if (collection, leaf) in table:
                name = table[collection, leaf]
            elif collection == "params":
                name = leaf
            else:
                raise ValueError(f"write_torch: {_hub_text(key)} has no PyTorch name (only "
                                 f"'params' and a batch norm's batch_stats mean/var have).")
            if leaf == "kernel" and kind == "linear":
                value = np.transpose(value)
            elif leaf == "kernel" and kind == "conv":
                value = _conv_from_hub(value)
            _put(out, sources, _join(path, name), key, value)
        if kind == "batch_norm":
            _put(out, sources, _join(path, _NUM_BATCHES), ("", path, _NUM_BATCHES),
                 np.array(0, np.int64))
    return out


def _put(out: dict, sources: dict, name: str, key: HubKey, value: Any) -> None:
    if name in out:
        raise ValueError(f"write_torch: {_hub_text(key)} and {_hub_text(sources[name])} "
                         f"would both be {name!r}.")
    out[name] = value
    sources[name] = key


def _hub_text(key: HubKey) -> str:
    """``params/layer1/0/conv1/kernel``; a key with no collection is a PyTorch name."""
    collection, path, leaf = key
    if not collection:
        return repr(_join(path, leaf))
    return "/".join([collection, *(str(p) for p in path), leaf])


# ----- files ------------------------------------------------------------------------------
def _safetensors_numpy() -> Any:
    return import_optional("safetensors.numpy", "torch", "bridge.interop (PyTorch weights)",
                           "safetensors")


def load_safetensors(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """The arrays of a ``.safetensors`` file, as NumPy arrays; PyTorch is not needed.

    Names, shapes and dtypes are the file's (float32 stays float32, an ``int64`` scalar
    such as ``num_batches_tracked`` stays a 0-d ``int64`` array, bfloat16 weights come back
    as ``ml_dtypes.bfloat16`` arrays, which JAX takes as ``jnp.bfloat16``).

    Args:
      path: the file, e.g. one written by ``safetensors.torch.save_file(model.state_dict(),
        path)`` or by ``save_safetensors``.

    Raises:
      ImportError: safetensors is not installed (``pip install "jax-bridge[torch]"``).

    Example::

        state_dict = load_safetensors("resnet18.safetensors")
        state_dict["conv1.weight"].shape     # (64, 3, 7, 7), float32
    """
    return dict(_safetensors_numpy().load_file(os.fspath(path)))


def save_safetensors(state_dict: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Write ``{name: array}`` to a ``.safetensors`` file that PyTorch can load.

    Each value is written as a C-contiguous NumPy array of its own dtype and shape (JAX
    arrays are copied to the host; transposed views are made contiguous).

    Args:
      state_dict: ``{name: array}``, e.g. from ``write_torch``.
      path: the file to write (replaced if it exists).

    Raises:
      ImportError: safetensors is not installed (``pip install "jax-bridge[torch]"``).

    Example::

        save_safetensors(write_torch(hub), "model.safetensors")
        # in PyTorch: model.load_state_dict(safetensors.torch.load_file("model.safetensors"))
    """
    module = _safetensors_numpy()
    # order="C" copies only what is not C-contiguous, and keeps 0-d arrays 0-d.
    arrays = {name: np.asarray(value, order="C") for name, value in state_dict.items()}
    module.save_file(arrays, os.fspath(path))
