"""Hand-written reference weight mappings between the Haiku models and their mirrors.

These are the reference the ``bridge.interop.port`` tests compare against. They do not
import ``bridge``: every model has its own explicit table of (Haiku module, Linen path,
layer kind), written from the architecture, and each layer kind has its conversion
written out with plain dict code.

Conventions:
  * Haiku trees are ``(params, state)`` with Haiku's flat module names as keys.
  * Linen trees are variables dicts; for the Transformer LM the Haiku -> Linen mapping
    takes ``like`` (the Linen init output) to wrap arrays in the same
    ``nn.LogicallyPartitioned`` boxes.
  * A leaf that is only renamed is passed through as the *same array object*; the tests
    use this to know which leaves must keep their buffers in a port.
  * Haiku's batch-norm EMA keeps ``hidden`` and ``counter`` next to ``average``; Linen
    keeps only the (debiased) average. Going to Haiku, ``hidden`` is the average and
    ``counter`` is ``EMA_COUNTER``, a count at which Haiku's zero-debiasing divides by
    exactly 1.
"""

from __future__ import annotations

from typing import Any, Iterator

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx, traverse_util

from .haiku_models import TRANSFORMER, TransformerConfig

EMA_COUNTER = 2 ** 30

Layers = list[tuple[str, tuple[str, ...], str]]   # (Haiku module, Linen path, kind)


# ----- the layer tables ---------------------------------------------------------------------

def resnet50_layers() -> Layers:
    def both(*parts: str) -> tuple[str, tuple[str, ...]]:
        return "/~/".join(("res_net50",) + parts), ("res_net50",) + parts

    out = [(*both("initial_conv"), "conv"), (*both("initial_batchnorm"), "batch_norm")]
    for g, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            base = (f"block_group_{g}", f"block_{b}")
            if b == 0:
                out += [(*both(*base, "shortcut_conv"), "conv"),
                        (*both(*base, "shortcut_batchnorm"), "batch_norm")]
            for i in range(3):
                out += [(*both(*base, f"conv_{i}"), "conv"),
                        (*both(*base, f"batchnorm_{i}"), "batch_norm")]
    out.append((*both("logits"), "linear"))
    return out


def _block_layers(hk_prefix: str, linen_prefix: tuple[str, ...]) -> Layers:
    """LayerNorm, attention, LayerNorm, MLP, as created inside a ``__call__``."""
    def at(hk_name: str, linen_name: str, kind: str):
        return (f"{hk_prefix}/{hk_name}" if hk_prefix else hk_name,
                linen_prefix + (linen_name,), kind)
    return [at("layer_norm", "LayerNorm_0", "layer_norm"),
            at("multi_head_attention", "MultiHeadDotProductAttention_0", "attention"),
            at("layer_norm_1", "LayerNorm_1", "layer_norm"),
            at("linear", "Dense_0", "linear"),
            at("linear_1", "Dense_1", "linear")]


def transformer_layers(cfg: TransformerConfig = TRANSFORMER) -> Layers:
    out: Layers = [("transformer_lm", ("transformer_lm",), "pos_embedding"),
                   ("transformer_lm/embed", ("transformer_lm", "Embed_0"), "embed")]
    for i in range(cfg.num_layers):
        out += _block_layers(f"transformer_lm/~/block_{i}", ("transformer_lm", f"block_{i}"))
    out += [("transformer_lm/layer_norm", ("transformer_lm", "LayerNorm_0"), "layer_norm"),
            ("transformer_lm/linear", ("transformer_lm", "Dense_0"), "linear")]
    return out


def lstm_layers() -> Layers:
    return [("lstm_classifier/embed", ("lstm_classifier", "Embed_0"), "embed"),
            ("lstm_classifier/lstm/linear", ("lstm_classifier", "LSTMCell_0"), "lstm"),
            ("lstm_classifier/linear", ("lstm_classifier", "Dense_0"), "linear")]


def attention_layers() -> Layers:
    return _block_layers("", ())


# ----- per-kind conversions -----------------------------------------------------------------

_LSTM_GATES = ("i", "g", "f", "o")   # Haiku's column order in lstm/linear


def _haiku_to_linen_layer(kind: str, hk_module: str, params: dict, state: dict,
                          num_heads: int) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(collection and sub-path, value) pairs of one layer."""
    p = params.get(hk_module, {})
    if kind in ("linear", "conv"):
        yield ("params", "kernel"), p["w"]
        if "b" in p:
            yield ("params", "bias"), p["b"]
    elif kind == "layer_norm":
        yield ("params", "scale"), p["scale"]
        yield ("params", "bias"), p["offset"]
    elif kind == "embed":
        yield ("params", "embedding"), p["embeddings"]
    elif kind == "pos_embedding":
        yield ("params", "pos_embedding"), p["pos_embedding"]
    elif kind == "batch_norm":
        yield ("params", "scale"), p["scale"].reshape(-1)
        yield ("params", "bias"), p["offset"].reshape(-1)
        yield ("batch_stats", "mean"), state[f"{hk_module}/~/mean_ema"]["average"].reshape(-1)
        yield ("batch_stats", "var"), state[f"{hk_module}/~/var_ema"]["average"].reshape(-1)
    elif kind == "attention":
        for hk_child, linen_child in (("query", "query"), ("key", "key"), ("value", "value")):
            w, b = params[f"{hk_module}/{hk_child}"]["w"], params[f"{hk_module}/{hk_child}"]["b"]
            d, hk_ = w.shape
            yield ("params", linen_child, "kernel"), w.reshape(d, num_heads, hk_ // num_heads)
            yield ("params", linen_child, "bias"), b.reshape(num_heads, hk_ // num_heads)
        w, b = params[f"{hk_module}/linear"]["w"], params[f"{hk_module}/linear"]["b"]
        hk_, d = w.shape
        yield ("params", "out", "kernel"), w.reshape(num_heads, hk_ // num_heads, d)
        yield ("params", "out", "bias"), b
    elif kind == "lstm":
        w, b = p["w"], p["b"]
        hidden = w.shape[1] // 4
        n_in = w.shape[0] - hidden
        for k, gate in enumerate(_LSTM_GATES):
            cols = slice(k * hidden, (k + 1) * hidden)
            yield ("params", f"i{gate}", "kernel"), w[:n_in, cols]
            yield ("params", f"h{gate}", "kernel"), w[n_in:, cols]
            # Haiku adds 1 to the forget gate's pre-activation; Linen has it in the bias.
            yield ("params", f"h{gate}", "bias"), b[cols] + 1 if gate == "f" else b[cols]
    else:
        raise ValueError(kind)


def _linen_to_haiku_layer(kind: str, hk_module: str, v: dict[tuple[str, ...], Any],
                          params: dict, state: dict) -> None:
    """``v`` maps (collection, sub-path...) of the layer to unboxed arrays."""
    if kind in ("linear", "conv"):
        params[hk_module] = {"w": v["params", "kernel"]}
        if ("params", "bias") in v:
            params[hk_module]["b"] = v["params", "bias"]
    elif kind == "layer_norm":
        params[hk_module] = {"scale": v["params", "scale"], "offset": v["params", "bias"]}
    elif kind == "embed":
        params[hk_module] = {"embeddings": v["params", "embedding"]}
    elif kind == "pos_embedding":
        params.setdefault(hk_module, {})["pos_embedding"] = v["params", "pos_embedding"]
    elif kind == "batch_norm":
        def nhwc(x):
            return x.reshape(1, 1, 1, -1)
        params[hk_module] = {"scale": nhwc(v["params", "scale"]),
                             "offset": nhwc(v["params", "bias"])}
        for stat, ema in (("mean", "mean_ema"), ("var", "var_ema")):
            average = nhwc(v["batch_stats", stat])
            state[f"{hk_module}/~/{ema}"] = {
                "average": average, "hidden": average,
                "counter": jnp.asarray(EMA_COUNTER, dtype=jnp.int32)}
    elif kind == "attention":
        for hk_child in ("query", "key", "value"):
            kernel, bias = v["params", hk_child, "kernel"], v["params", hk_child, "bias"]
            params[f"{hk_module}/{hk_child}"] = {"w": kernel.reshape(kernel.shape[0], -1),
                                                 "b": bias.reshape(-1)}
        kernel = v["params", "out", "kernel"]
        params[f"{hk_module}/linear"] = {"w": kernel.reshape(-1, kernel.shape[-1]),
                                         "b": v["params", "out", "bias"]}
    elif kind == "lstm":
        w_in = jnp.concatenate([v["params", f"i{g}", "kernel"] for g in _LSTM_GATES], axis=1)
        w_h = jnp.concatenate([v["params", f"h{g}", "kernel"] for g in _LSTM_GATES], axis=1)
        b = jnp.concatenate([v["params", f"h{g}", "bias"] - 1 if g == "f"
                             else v["params", f"h{g}", "bias"] for g in _LSTM_GATES])
        params[hk_module] = {"w": jnp.concatenate([w_in, w_h], axis=0), "b": b}
    else:
        raise ValueError(kind)


# ----- whole models -------------------------------------------------------------------------

def _unbox(x):
    return x.value if isinstance(x, nn.meta.AxisMetadata) else x


def haiku_to_linen(layers: Layers, params: dict, state: dict, *, num_heads: int = 0,
                   like: dict | None = None) -> dict:
    """Linen variables from Haiku ``(params, state)``; boxes copied from ``like``."""
    flat: dict[tuple[str, ...], Any] = {}
    for hk_module, path, kind in layers:
        for (coll, *sub), value in _haiku_to_linen_layer(kind, hk_module, params, state,
                                                         num_heads):
            flat[(coll, *path, *sub)] = value
    if like is not None:
        like_flat = traverse_util.flatten_dict(like)
        assert set(like_flat) == set(flat), set(like_flat) ^ set(flat)
        for key, box in like_flat.items():
            if isinstance(box, nn.meta.AxisMetadata):
                flat[key] = box.replace_boxed(flat[key])
    return traverse_util.unflatten_dict(flat)


def linen_to_haiku(layers: Layers, variables: dict) -> tuple[dict, dict]:
    """Haiku ``(params, state)`` from Linen variables (boxes are unwrapped)."""
    flat = {k: _unbox(v) for k, v in traverse_util.flatten_dict(variables).items()}
    params: dict = {}
    state: dict = {}
    used = set()
    for hk_module, path, kind in layers:
        n = len(path)
        if kind == "pos_embedding":   # a parameter of the module itself, not a whole layer
            mine = {k: v for k, v in flat.items() if k[1:] == (*path, "pos_embedding")}
        else:
            mine = {k: v for k, v in flat.items() if k[1:n + 1] == path}
        used |= set(mine)
        _linen_to_haiku_layer(kind, hk_module, {(k[0], *k[n + 1:]): v for k, v in mine.items()},
                              params, state)
    assert used == set(flat), set(flat) - used
    return params, state


# ----- Linen -> NNX -------------------------------------------------------------------------

_NNX_COLLECTION = {nnx.Param: "params", nnx.BatchStat: "batch_stats"}
_NNX_RENAMES = {"if_": "if"}   # nnx.LSTMCell's forget-gate input child


def linen_to_nnx(variables: dict, like: nnx.State) -> nnx.State:
    """The ``nnx.State`` of the NNX mirror holding the Linen variables.

    ``like`` is the mirror's state: it supplies the variable types and their metadata
    (sharding names). Every Linen leaf must be used.
    """
    flat = {k: _unbox(v) for k, v in traverse_util.flatten_dict(variables).items()}
    out = []
    for path, var in nnx.to_flat_state(like):
        collection = _NNX_COLLECTION[type(var)]
        key = (collection, *(_NNX_RENAMES.get(p, p) if isinstance(p, str) else str(p)
                             for p in path))
        value = flat.pop(key)
        assert value.shape == var.get_value().shape, (key, value.shape, var.shape)
        out.append((path, var.replace(value)))
    assert not flat, sorted(flat)
    return nnx.from_flat_state(out)
