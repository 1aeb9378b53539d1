"""Flax NNX mirrors of the Haiku models in ``haiku_models``, named like the Linen mirrors.

Attributes carry the Linen names (``self.Dense_0``, ``self.LayerNorm_1``, ``self.block_0``)
so that an ``nnx.State`` of a mirror has exactly the paths of the Linen variables
(``nnx.Param`` <-> 'params', ``nnx.BatchStat`` <-> 'batch_stats'). The one difference
comes from Flax itself: ``nnx.LSTMCell`` names its forget-gate input child ``if_``
where Linen's ``LSTMCell`` says ``if``.

The Transformer LM carries sharding metadata (``nnx.with_partitioning``) with the
logical axis names of the Linen mirror; it is built without eager sharding (no mesh).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from .haiku_models import (
    ATTENTION,
    LSTM,
    RESNET,
    TRANSFORMER,
    AttentionConfig,
    LSTMConfig,
    ResNetConfig,
    TransformerConfig,
)

_HAIKU_LN = partial(nnx.LayerNorm, epsilon=1e-5, use_fast_variance=False)


# ----- (a) ResNet-50 ------------------------------------------------------------------------

# hk.nets.ResNet50's layout, as shipped with Haiku (one place for both mirrors)
from .haiku_models import RESNET50_BLOCKS as _BLOCKS_PER_GROUP  # noqa: E402
from .haiku_models import RESNET50_CHANNELS as _CHANNELS_PER_GROUP  # noqa: E402
from .haiku_models import RESNET50_STRIDES as _STRIDES  # noqa: E402


def _batch_norm(features: int, rngs: nnx.Rngs, zero_scale: bool = False) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, use_running_average=True, momentum=0.9, epsilon=1e-5,
                         use_fast_variance=False, rngs=rngs,
                         scale_init=nnx.initializers.zeros if zero_scale else nnx.initializers.ones)


def _conv(cin: int, cout: int, kernel: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding="SAME", use_bias=False,
                    rngs=rngs)


class BottleneckBlock(nnx.Module):
    def __init__(self, cin: int, channels: int, stride: int, use_projection: bool,
                 rngs: nnx.Rngs):
        self.use_projection = use_projection
        if use_projection:
            self.shortcut_conv = _conv(cin, channels, 1, stride, rngs)
            self.shortcut_batchnorm = _batch_norm(channels, rngs)
        mid = channels // 4
        self.conv_0 = _conv(cin, mid, 1, 1, rngs)
        self.batchnorm_0 = _batch_norm(mid, rngs)
        self.conv_1 = _conv(mid, mid, 3, stride, rngs)
        self.batchnorm_1 = _batch_norm(mid, rngs)
        self.conv_2 = _conv(mid, channels, 1, 1, rngs)
        self.batchnorm_2 = _batch_norm(channels, rngs, zero_scale=True)

    def __call__(self, x):
        shortcut = x
        if self.use_projection:
            shortcut = self.shortcut_batchnorm(self.shortcut_conv(shortcut))
        x = jax.nn.relu(self.batchnorm_0(self.conv_0(x)))
        x = jax.nn.relu(self.batchnorm_1(self.conv_1(x)))
        x = self.batchnorm_2(self.conv_2(x))
        return jax.nn.relu(x + shortcut)


class BlockGroup(nnx.Module):
    def __init__(self, cin: int, channels: int, num_blocks: int, stride: int, rngs: nnx.Rngs):
        self.num_blocks = num_blocks
        for i in range(num_blocks):
            setattr(self, f"block_{i}", BottleneckBlock(cin if i == 0 else channels, channels,
                                                        1 if i else stride, i == 0, rngs))

    def __call__(self, x):
        for i in range(self.num_blocks):
            x = getattr(self, f"block_{i}")(x)
        return x


class ResNet50Net(nnx.Module):
    def __init__(self, num_classes: int, rngs: nnx.Rngs):
        self.initial_conv = nnx.Conv(3, 64, (7, 7), strides=2, padding="SAME", use_bias=False,
                                     rngs=rngs)
        self.initial_batchnorm = _batch_norm(64, rngs)
        cin = 64
        for i, (blocks, channels, stride) in enumerate(
                zip(_BLOCKS_PER_GROUP, _CHANNELS_PER_GROUP, _STRIDES)):
            setattr(self, f"block_group_{i}", BlockGroup(cin, channels, blocks, stride, rngs))
            cin = channels
        self.logits = nnx.Linear(cin, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.initial_batchnorm(self.initial_conv(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i in range(len(_BLOCKS_PER_GROUP)):
            x = getattr(self, f"block_group_{i}")(x)
        return self.logits(jnp.mean(x, axis=(1, 2)))


class ResNet50(nnx.Module):
    """Mirror of ``hk.nets.ResNet50`` in eval mode; the network is ``self.res_net50``."""

    def __init__(self, cfg: ResNetConfig = RESNET, *, rngs: nnx.Rngs):
        self.res_net50 = ResNet50Net(cfg.num_classes, rngs)

    def __call__(self, images):
        return self.res_net50(images)


# ----- (b) Transformer LM with sharding metadata --------------------------------------------

def _sharded(init, names):
    return nnx.with_partitioning(init, names)


_ZEROS = nnx.initializers.zeros_init()
_ONES = nnx.initializers.ones_init()


def _partitioned_ln(d: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return _HAIKU_LN(d, scale_init=_sharded(_ONES, ("embed",)),
                     bias_init=_sharded(_ZEROS, ("embed",)), rngs=rngs)


def _partitioned_linear(cin: int, cout: int, names: tuple[str, str], rngs: nnx.Rngs):
    return nnx.Linear(cin, cout, kernel_init=_sharded(nnx.initializers.lecun_normal(), names),
                      bias_init=_sharded(_ZEROS, names[1:]), rngs=rngs)


class TransformerBlock(nnx.Module):
    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        d = cfg.d_model
        self.LayerNorm_0 = _partitioned_ln(d, rngs)
        self.MultiHeadDotProductAttention_0 = nnx.MultiHeadAttention(
            cfg.num_heads, d, qkv_features=d, out_features=d, decode=False,
            kernel_init=_sharded(nnx.initializers.lecun_normal(), ("embed", "heads", "kv")),
            bias_init=_sharded(_ZEROS, ("heads", "kv")),
            out_kernel_init=_sharded(nnx.initializers.lecun_normal(), ("heads", "kv", "embed")),
            out_bias_init=_sharded(_ZEROS, ("embed",)), rngs=rngs)
        self.LayerNorm_1 = _partitioned_ln(d, rngs)
        self.Dense_0 = _partitioned_linear(d, cfg.mlp_size, ("embed", "mlp"), rngs)
        self.Dense_1 = _partitioned_linear(cfg.mlp_size, d, ("mlp", "embed"), rngs)

    def __call__(self, x, mask):
        h = self.LayerNorm_0(x)
        x = x + self.MultiHeadDotProductAttention_0(h, mask=mask)
        h = self.Dense_0(self.LayerNorm_1(x))
        return x + self.Dense_1(jax.nn.gelu(h))


class TransformerNet(nnx.Module):
    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        self.num_layers = cfg.num_layers
        self.Embed_0 = nnx.Embed(cfg.vocab_size, cfg.d_model,
                                 embedding_init=_sharded(nnx.initializers.normal(1.0),
                                                         ("vocab", "embed")), rngs=rngs)
        self.pos_embedding = nnx.Param(_sharded(nnx.initializers.normal(0.02), ("length", "embed"))(
            rngs.params(), (cfg.max_len, cfg.d_model)))
        for i in range(cfg.num_layers):
            setattr(self, f"block_{i}", TransformerBlock(cfg, rngs))
        self.LayerNorm_0 = _partitioned_ln(cfg.d_model, rngs)
        self.Dense_0 = _partitioned_linear(cfg.d_model, cfg.vocab_size, ("embed", "vocab"), rngs)

    def __call__(self, tokens):
        length = tokens.shape[-1]
        x = self.Embed_0(tokens) + self.pos_embedding[...][:length]
        mask = nnx.make_causal_mask(tokens)
        for i in range(self.num_layers):
            x = getattr(self, f"block_{i}")(x, mask)
        return self.Dense_0(self.LayerNorm_0(x))


class TransformerLM(nnx.Module):
    """Mirror of ``haiku_models.TransformerLM``; the network is ``self.transformer_lm``."""

    def __init__(self, cfg: TransformerConfig = TRANSFORMER, *, rngs: nnx.Rngs):
        with nnx.use_eager_sharding(False):
            self.transformer_lm = TransformerNet(cfg, rngs)

    def __call__(self, tokens):
        return self.transformer_lm(tokens)


# ----- (c) LSTM classifier ------------------------------------------------------------------

class LSTMNet(nnx.Module):
    def __init__(self, cfg: LSTMConfig, rngs: nnx.Rngs):
        self.hidden_size = cfg.hidden_size
        self.Embed_0 = nnx.Embed(cfg.vocab_size, cfg.embed_dim, rngs=rngs)
        self.LSTMCell_0 = nnx.LSTMCell(cfg.embed_dim, cfg.hidden_size, rngs=rngs)
        self.Dense_0 = nnx.Linear(cfg.hidden_size, cfg.num_classes, rngs=rngs)

    def __call__(self, tokens):
        x = self.Embed_0(tokens)                                   # [B, T, E]
        zeros = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
        carry = (zeros, zeros)                                     # (cell, hidden)
        for t in range(x.shape[1]):
            carry, _ = self.LSTMCell_0(carry, x[:, t])
        _, hidden = carry
        return self.Dense_0(hidden)


class LSTMClassifier(nnx.Module):
    """Mirror of ``haiku_models.LSTMClassifier``; the network is ``self.lstm_classifier``."""

    def __init__(self, cfg: LSTMConfig = LSTM, *, rngs: nnx.Rngs):
        self.lstm_classifier = LSTMNet(cfg, rngs)

    def __call__(self, tokens):
        return self.lstm_classifier(tokens)


# ----- (d) attention block ------------------------------------------------------------------

class AttentionBlock(nnx.Module):
    """Mirror of ``haiku_models.attention_block``: the layers are top-level attributes."""

    def __init__(self, cfg: AttentionConfig = ATTENTION, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.LayerNorm_0 = _HAIKU_LN(d, rngs=rngs)
        self.MultiHeadDotProductAttention_0 = nnx.MultiHeadAttention(
            cfg.num_heads, d, qkv_features=d, out_features=d, decode=False, rngs=rngs)
        self.LayerNorm_1 = _HAIKU_LN(d, rngs=rngs)
        self.Dense_0 = nnx.Linear(d, cfg.mlp_size, rngs=rngs)
        self.Dense_1 = nnx.Linear(cfg.mlp_size, d, rngs=rngs)

    def __call__(self, x):
        x = x + self.MultiHeadDotProductAttention_0(self.LayerNorm_0(x))
        h = self.Dense_0(self.LayerNorm_1(x))
        return x + self.Dense_1(jax.nn.gelu(h))
