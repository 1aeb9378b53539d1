"""Flax Linen mirrors of the Haiku models in ``haiku_models``.

Each mirror computes the same function as its Haiku model and its variable names are
the default translations of the Haiku names: Haiku's automatic names (``linear_1``,
``layer_norm``, ``multi_head_attention``, ``embed``, ``lstm``) become Linen's automatic
names (``Dense_1``, ``LayerNorm_0``, ...), explicit names stay. Linen root variables
have no name of their own, so a Haiku network whose top module is ``transformer_lm``
is mirrored by a root module holding the network as a child named ``transformer_lm``.

Haiku conventions that the mirrors reproduce: LayerNorm epsilon 1e-5 with the
two-pass variance; ResNet batch norm decay 0.9 / epsilon 1e-5, 'SAME' padding and
strides on the 3x3 convolutions of each bottleneck (``hk.nets.ResNet50`` is V1).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

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

_HAIKU_LN = partial(nn.LayerNorm, epsilon=1e-5, use_fast_variance=False)


# ----- (a) ResNet-50 ------------------------------------------------------------------------

# hk.nets.ResNet50's layout, as shipped with Haiku (one place for both mirrors)
from .haiku_models import RESNET50_BLOCKS as _BLOCKS_PER_GROUP  # noqa: E402
from .haiku_models import RESNET50_CHANNELS as _CHANNELS_PER_GROUP  # noqa: E402
from .haiku_models import RESNET50_STRIDES as _STRIDES  # noqa: E402


def _batch_norm(name: str, zero_scale: bool = False) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, name=name,
                        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


class BottleneckBlock(nn.Module):
    channels: int
    stride: int
    use_projection: bool

    @nn.compact
    def __call__(self, x):
        shortcut = x
        if self.use_projection:
            shortcut = nn.Conv(self.channels, (1, 1), strides=self.stride, padding="SAME",
                               use_bias=False, name="shortcut_conv")(shortcut)
            shortcut = _batch_norm("shortcut_batchnorm")(shortcut)
        specs = ((self.channels // 4, 1, 1), (self.channels // 4, 3, self.stride),
                 (self.channels, 1, 1))
        for i, (features, kernel, stride) in enumerate(specs):
            x = nn.Conv(features, (kernel, kernel), strides=stride, padding="SAME",
                        use_bias=False, name=f"conv_{i}")(x)
            x = _batch_norm(f"batchnorm_{i}", zero_scale=(i == 2))(x)
            if i < 2:
                x = jax.nn.relu(x)
        return jax.nn.relu(x + shortcut)


class BlockGroup(nn.Module):
    channels: int
    num_blocks: int
    stride: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.num_blocks):
            x = BottleneckBlock(self.channels, 1 if i else self.stride, use_projection=(i == 0),
                                name=f"block_{i}")(x)
        return x


class ResNet50Net(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(64, (7, 7), strides=2, padding="SAME", use_bias=False,
                    name="initial_conv")(x)
        x = jax.nn.relu(_batch_norm("initial_batchnorm")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, (blocks, channels, stride) in enumerate(
                zip(_BLOCKS_PER_GROUP, _CHANNELS_PER_GROUP, _STRIDES)):
            x = BlockGroup(channels, blocks, stride, name=f"block_group_{i}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="logits")(x)


class ResNet50(nn.Module):
    """Mirror of ``hk.nets.ResNet50`` in eval mode (moving averages), root of 'res_net50'."""
    cfg: ResNetConfig = RESNET

    @nn.compact
    def __call__(self, images):
        return ResNet50Net(self.cfg.num_classes, name="res_net50")(images)


# ----- (b) Transformer LM with logical partitioning -----------------------------------------

def _logical(init, names):
    return nn.with_logical_partitioning(init, names)


_ZEROS = nn.initializers.zeros_init()
_ONES = nn.initializers.ones_init()


def _partitioned_ln() -> nn.LayerNorm:
    return _HAIKU_LN(scale_init=_logical(_ONES, ("embed",)), bias_init=_logical(_ZEROS, ("embed",)))


def _partitioned_dense(features: int, names: tuple[str, str]) -> nn.Dense:
    return nn.Dense(features, kernel_init=_logical(nn.initializers.lecun_normal(), names),
                    bias_init=_logical(_ZEROS, names[1:]))


class TransformerBlock(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x, mask):
        cfg = self.cfg
        h = _partitioned_ln()(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=cfg.num_heads, qkv_features=cfg.d_model, out_features=cfg.d_model,
            kernel_init=_logical(nn.initializers.lecun_normal(), ("embed", "heads", "kv")),
            bias_init=_logical(_ZEROS, ("heads", "kv")),
            out_kernel_init=_logical(nn.initializers.lecun_normal(), ("heads", "kv", "embed")),
            out_bias_init=_logical(_ZEROS, ("embed",)),
        )(h, h, mask=mask)
        x = x + h
        h = _partitioned_ln()(x)
        h = _partitioned_dense(cfg.mlp_size, ("embed", "mlp"))(h)
        h = jax.nn.gelu(h)
        h = _partitioned_dense(cfg.d_model, ("mlp", "embed"))(h)
        return x + h


class TransformerNet(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, tokens):
        cfg = self.cfg
        length = tokens.shape[-1]
        embedding_init = _logical(nn.initializers.normal(1.0), ("vocab", "embed"))
        x = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=embedding_init)(tokens)
        pos = self.param("pos_embedding",
                         _logical(nn.initializers.normal(0.02), ("length", "embed")),
                         (cfg.max_len, cfg.d_model))
        x = x + pos[:length]
        mask = nn.make_causal_mask(tokens)
        for i in range(cfg.num_layers):
            x = TransformerBlock(cfg, name=f"block_{i}")(x, mask)
        x = _partitioned_ln()(x)
        return _partitioned_dense(cfg.vocab_size, ("embed", "vocab"))(x)


class TransformerLM(nn.Module):
    """Mirror of ``haiku_models.TransformerLM``, root of 'transformer_lm'."""
    cfg: TransformerConfig = TRANSFORMER

    @nn.compact
    def __call__(self, tokens):
        return TransformerNet(self.cfg, name="transformer_lm")(tokens)


# ----- (c) LSTM classifier ------------------------------------------------------------------

class LSTMNet(nn.Module):
    cfg: LSTMConfig

    @nn.compact
    def __call__(self, tokens):
        cfg = self.cfg
        x = nn.Embed(cfg.vocab_size, cfg.embed_dim)(tokens)
        # nn.LSTMCell built here is the child LSTMCell_0; nn.RNN scans it over time.
        (_, hidden), _ = nn.RNN(nn.LSTMCell(cfg.hidden_size), return_carry=True)(x)
        return nn.Dense(cfg.num_classes)(hidden)


class LSTMClassifier(nn.Module):
    """Mirror of ``haiku_models.LSTMClassifier``, root of 'lstm_classifier'."""
    cfg: LSTMConfig = LSTM

    @nn.compact
    def __call__(self, tokens):
        return LSTMNet(self.cfg, name="lstm_classifier")(tokens)


# ----- (d) attention block ------------------------------------------------------------------

class AttentionBlock(nn.Module):
    """Mirror of ``haiku_models.attention_block``: the layers are root children."""
    cfg: AttentionConfig = ATTENTION

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        h = _HAIKU_LN()(x)
        h = nn.MultiHeadDotProductAttention(num_heads=cfg.num_heads, qkv_features=cfg.d_model,
                                            out_features=cfg.d_model)(h, h)
        x = x + h
        h = _HAIKU_LN()(x)
        h = nn.Dense(cfg.mlp_size)(h)
        h = jax.nn.gelu(h)
        h = nn.Dense(cfg.d_model)(h)
        return x + h
