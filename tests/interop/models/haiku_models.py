"""Haiku models for the porting tests (issue 11), small enough for 2 CPU cores.

Style: sub-modules built in ``__init__`` get explicit names (Haiku gives them
``parent/~/name``); sub-modules built inside ``__call__`` keep Haiku's automatic names
(``parent/linear``, ``parent/layer_norm_1``, ...). The Linen and NNX mirrors in
``linen_models`` and ``nnx_models`` use the translations of these names.

Every builder returns an ``hk.TransformedWithState``: ``init(rng, *example_inputs)``
and ``apply(params, state, rng, *inputs)``; models without state have an empty state.
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp

#: hk.nets.ResNet50's layout (blocks, channels and strides per block group), which the
#: Linen and NNX mirrors follow.
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_CHANNELS = (256, 512, 1024, 2048)
RESNET50_STRIDES = (1, 2, 2, 2)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    num_classes: int = 10
    image_shape: tuple[int, int, int, int] = (1, 32, 32, 3)


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 64
    d_model: int = 32
    num_heads: int = 4
    num_layers: int = 2
    mlp_size: int = 64
    max_len: int = 16
    batch: int = 2
    length: int = 8

    @property
    def key_size(self) -> int:
        return self.d_model // self.num_heads


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    vocab_size: int = 32
    embed_dim: int = 8
    hidden_size: int = 16
    num_classes: int = 5
    batch: int = 2
    length: int = 7


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    d_model: int = 32
    num_heads: int = 4
    mlp_size: int = 64
    batch: int = 2
    length: int = 6

    @property
    def key_size(self) -> int:
        return self.d_model // self.num_heads


RESNET = ResNetConfig()
TRANSFORMER = TransformerConfig()
LSTM = LSTMConfig()
ATTENTION = AttentionConfig()

#: hk.MultiHeadAttention requires an explicit initializer.
_ATTENTION_W_INIT = hk.initializers.VarianceScaling(1.0)


def _layer_norm() -> hk.LayerNorm:
    return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)


# ----- (a) ResNet-50, as shipped ------------------------------------------------------------

def resnet50(cfg: ResNetConfig = RESNET) -> hk.TransformedWithState:
    """``hk.nets.ResNet50``; ``apply(params, state, rng, images, is_training=False)``.

    ``init`` must be called with ``is_training=True`` so that the batch-norm moving
    averages exist.
    """

    def forward(images, is_training=False):
        return hk.nets.ResNet50(cfg.num_classes)(images, is_training=is_training)

    return hk.transform_with_state(forward)


# ----- (b) decoder-only Transformer LM -------------------------------------------------------

class TransformerBlock(hk.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: TransformerConfig, name: str | None = None):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = _layer_norm()(x)
        h = hk.MultiHeadAttention(cfg.num_heads, cfg.key_size, w_init=_ATTENTION_W_INIT)(
            h, h, h, mask=mask)
        x = x + h
        h = _layer_norm()(x)
        h = hk.Linear(cfg.mlp_size)(h)
        h = jax.nn.gelu(h)
        h = hk.Linear(cfg.d_model)(h)
        return x + h


class TransformerLM(hk.Module):
    """Token + learned positional embeddings, causal blocks, final norm, vocab head."""

    def __init__(self, cfg: TransformerConfig, name: str | None = "transformer_lm"):
        super().__init__(name=name)
        self.cfg = cfg
        self.blocks = [TransformerBlock(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]

    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        length = tokens.shape[-1]
        x = hk.Embed(cfg.vocab_size, cfg.d_model)(tokens)
        pos = hk.get_parameter("pos_embedding", [cfg.max_len, cfg.d_model],
                               init=hk.initializers.TruncatedNormal(0.02))
        x = x + pos[:length]
        mask = jnp.tril(jnp.ones((1, 1, length, length), dtype=bool))
        for block in self.blocks:
            x = block(x, mask)
        x = _layer_norm()(x)
        return hk.Linear(cfg.vocab_size)(x)


def transformer_lm(cfg: TransformerConfig = TRANSFORMER) -> hk.TransformedWithState:
    """``apply(params, state, rng, tokens)`` with int tokens ``[B, T]`` -> logits."""
    return hk.transform_with_state(lambda tokens: TransformerLM(cfg)(tokens))


# ----- (c) LSTM classifier ------------------------------------------------------------------

class LSTMClassifier(hk.Module):
    """Embed tokens, run an LSTM over time, classify the last hidden state."""

    def __init__(self, cfg: LSTMConfig, name: str | None = "lstm_classifier"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = hk.Embed(cfg.vocab_size, cfg.embed_dim)(tokens)            # [B, T, E]
        core = hk.LSTM(cfg.hidden_size)
        _, final = hk.dynamic_unroll(core, jnp.swapaxes(x, 0, 1),       # time major
                                     core.initial_state(tokens.shape[0]))
        return hk.Linear(cfg.num_classes)(final.hidden)


def lstm_classifier(cfg: LSTMConfig = LSTM) -> hk.TransformedWithState:
    """``apply(params, state, rng, tokens)`` with int tokens ``[B, T]`` -> logits."""
    return hk.transform_with_state(lambda tokens: LSTMClassifier(cfg)(tokens))


# ----- (d) attention block, modules at the top level ----------------------------------------

def attention_block(cfg: AttentionConfig = ATTENTION) -> hk.TransformedWithState:
    """x + attn(ln(x)), then x + mlp(ln(x)); no enclosing module, so the parameters are
    ``layer_norm``, ``multi_head_attention/{query,key,value,linear}``, ``layer_norm_1``,
    ``linear`` and ``linear_1``. ``apply(params, state, rng, x)`` with x ``[B, T, D]``."""

    def forward(x):
        h = _layer_norm()(x)
        h = hk.MultiHeadAttention(cfg.num_heads, cfg.key_size, w_init=_ATTENTION_W_INIT)(h, h, h)
        x = x + h
        h = _layer_norm()(x)
        h = hk.Linear(cfg.mlp_size)(h)
        h = jax.nn.gelu(h)
        h = hk.Linear(cfg.d_model)(h)
        return x + h

    return hk.transform_with_state(forward)
