"""Ready-made layers: ``Linear``, ``Conv2D``, ``BatchNorm*``, ``Dropout``, ``Sequential``."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from bridge.functional._padding import ConvPadding, ConvPaddingInt, to_padding, to_tuple
from bridge.nn.init import kaiming_normal, xavier_normal
from bridge.random import DEFAULT_GENERATOR, Generator
from bridge.state import Module, ModuleList, StateVar, TrainVar
from bridge.state._module import local_kwargs

__all__ = ["BatchNorm", "BatchNorm0D", "BatchNorm1D", "BatchNorm2D", "Conv2D", "Dropout",
           "Linear", "Sequential"]

Initializer = Callable[[tuple[int, ...]], jax.Array]


class Linear(Module):
    """A dense layer ``y = x @ w + b``.

    Args:
      nin: input features.
      nout: output features.
      use_bias: add the bias ``b`` (otherwise ``self.b`` is ``None``).
      w_init: called with the shape ``(nin, nout)`` to create ``w``.

    Variables: ``b`` (zeros, shape ``(nout,)``) then ``w`` (shape ``(nin, nout)``).
    Input ``(..., nin)``, output ``(..., nout)``.

    Example::

        layer = bridge.nn.Linear(3, 4)
        layer(jnp.ones((2, 3))).shape   # (2, 4)
        list(layer.vars().keys())       # ['(Linear).b', '(Linear).w']
    """

    def __init__(self, nin: int, nout: int, use_bias: bool = True,
                 w_init: Initializer = xavier_normal):
        self.w_init = w_init
        self.b = TrainVar(jnp.zeros(nout)) if use_bias else None
        self.w = TrainVar(w_init((nin, nout)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x @ w (+ b)``: shape ``(..., nin)`` → ``(..., nout)``."""
        y = jnp.dot(x, self.w.value)
        if self.b is not None:
            y = y + self.b.value
        return y


class Conv2D(Module):
    """A 2-D convolution over NCHW images, kernel in HWIO layout.

    Args:
      nin: input channels (divisible by ``groups``).
      nout: output channels (divisible by ``groups``).
      k: kernel size, an int or ``(kh, kw)``.
      strides: step, an int or a pair.
      dilations: kernel dilation, an int or a pair.
      groups: feature groups (``groups == nin`` is a depthwise convolution).
      padding: ``ConvPadding.SAME``/``VALID`` (or the strings), an int, one ``(lo, hi)``
        pair for both dimensions, or two pairs.
      use_bias: add the bias ``b`` (otherwise ``self.b`` is ``None``).
      w_init: called with the kernel shape ``(kh, kw, nin // groups, nout)``.

    Variables: ``b`` (zeros, shape ``(nout, 1, 1)``) then ``w``.
    Input ``(N, nin, H, W)``, output ``(N, nout, H', W')``; with ``SAME`` padding
    ``H' = ceil(H / stride)``.

    Example::

        conv = bridge.nn.Conv2D(3, 16, 3, strides=2)
        conv(jnp.ones((8, 3, 32, 32))).shape   # (8, 16, 16, 16)
    """

    def __init__(self, nin: int, nout: int, k: Union[int, Sequence[int]],
                 strides: Union[int, Sequence[int]] = 1,
                 dilations: Union[int, Sequence[int]] = 1, groups: int = 1,
                 padding: ConvPaddingInt = ConvPadding.SAME, use_bias: bool = True,
                 w_init: Initializer = kaiming_normal):
        if nin % groups or nout % groups:
            raise ValueError(f"Conv2D: nin ({nin}) and nout ({nout}) must be divisible by "
                             f"groups ({groups}).")
        self.w_init = w_init
        self.b = TrainVar(jnp.zeros((nout, 1, 1))) if use_bias else None
        self.w = TrainVar(w_init((*to_tuple(k, 2), nin // groups, nout)))
        self.padding = to_padding(padding, 2)
        self.strides = to_tuple(strides, 2)
        self.dilations = to_tuple(dilations, 2)
        self.groups = groups

    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolve: shape ``(N, nin, H, W)`` → ``(N, nout, H', W')``."""
        nin = self.w.shape[2] * self.groups
        if x.ndim != 4 or x.shape[1] != nin:
            raise ValueError(f"Conv2D expects input of shape (N, {nin}, H, W), got {x.shape}.")
        y = jax.lax.conv_general_dilated(
            x, self.w.value, self.strides, self.padding, rhs_dilation=self.dilations,
            feature_group_count=self.groups, dimension_numbers=("NCHW", "HWIO", "NCHW"))
        if self.b is not None:
            y = y + self.b.value
        return y


class BatchNorm(Module):
    """Batch normalization with running statistics, over the axes ``redux``.

    Args:
      dims: shape of the statistics and of ``beta``/``gamma`` (1 on reduced axes).
      redux: axes averaged over to get the batch statistics.
      momentum: running stats move by ``(1 - momentum) * (batch - running)`` per call.
      eps: added to the variance before the square root.

    Variables, in order: ``running_mean`` (StateVar zeros), ``running_var`` (StateVar
    ones), ``beta`` (TrainVar zeros), ``gamma`` (TrainVar ones), all of shape ``dims``.

    Example::

        bn = bridge.nn.BatchNorm((1, 4), (0,))
        y = bn(jnp.ones((8, 4)), training=True)    # updates the running statistics
    """

    def __init__(self, dims: Iterable[int], redux: Iterable[int], momentum: float = 0.999,
                 eps: float = 1e-6):
        dims = tuple(dims)
        self.momentum = momentum
        self.eps = eps
        self.redux = tuple(redux)
        self.running_mean = StateVar(jnp.zeros(dims))
        self.running_var = StateVar(jnp.ones(dims))
        self.beta = TrainVar(jnp.zeros(dims))
        self.gamma = TrainVar(jnp.ones(dims))

    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        """Normalize ``x`` (same shape out).

        ``training=True`` uses the batch mean and (biased) variance over ``redux`` and
        updates the running statistics; ``training=False`` uses the running statistics.
        """
        if training:
            mean = jnp.mean(x, axis=self.redux, keepdims=True)
            var = jnp.mean(jnp.square(x - mean), axis=self.redux, keepdims=True)
            rate = 1 - self.momentum
            self.running_mean.value += rate * (mean - self.running_mean.value)
            self.running_var.value += rate * (var - self.running_var.value)
        else:
            mean, var = self.running_mean.value, self.running_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.gamma.value + self.beta.value


class BatchNorm0D(BatchNorm):
    """``BatchNorm`` for ``(N, nin)`` inputs: statistics per feature, shape ``(1, nin)``.

    Example::

        bridge.nn.BatchNorm0D(4)(jnp.ones((8, 4)), training=False).shape   # (8, 4)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin), (0,), momentum, eps)


class BatchNorm1D(BatchNorm):
    """``BatchNorm`` for ``(N, nin, L)`` inputs: per channel, shape ``(1, nin, 1)``.

    Example::

        bridge.nn.BatchNorm1D(4)(jnp.ones((8, 4, 10)), training=True).shape   # (8, 4, 10)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin, 1), (0, 2), momentum, eps)


class BatchNorm2D(BatchNorm):
    """``BatchNorm`` for NCHW inputs: per channel, statistics of shape ``(1, nin, 1, 1)``.

    Example::

        bn = bridge.nn.BatchNorm2D(16)
        bn(jnp.ones((8, 16, 5, 5)), training=True).shape   # (8, 16, 5, 5)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin, 1, 1), (0, 2, 3), momentum, eps)


class Dropout(Module):
    """Zero each entry with probability ``1 - keep`` while training, scaling the rest by
    ``1 / keep`` so that the expectation is unchanged.

    Args:
      keep: probability of keeping an entry.
      generator: the key source, stored as ``self.keygen`` (its ``key`` is among
        ``vars()``, so ``Jit(model)`` advances it on each call).

    Example::

        drop = bridge.nn.Dropout(0.8)
        drop(x, training=True)                     # a new mask each call
        drop(x, training=False)                    # x itself
        drop(x, training=True, dropout_keep=0.5)   # override ``keep`` for this call
    """

    def __init__(self, keep: float, generator: Generator = DEFAULT_GENERATOR):
        self.keep = keep
        self.keygen = generator

    def __call__(self, x: jax.Array, training: bool,
                 dropout_keep: Optional[float] = None) -> jax.Array:
        """Apply dropout (same shape out); the identity unless ``training`` and keep < 1."""
        keep = self.keep if dropout_keep is None else dropout_keep
        if not training or keep >= 1:
            return x
        mask = jax.random.bernoulli(self.keygen(), keep, jnp.shape(x))
        return jnp.where(mask, x / keep, 0)


class Sequential(ModuleList):
    """Layers (modules or plain functions) applied one after another.

    Keyword arguments of a call reach only the layers whose signature accepts them
    (``training`` goes to ``BatchNorm`` and ``Dropout``, not to ``Linear``). A layer that
    returns a tuple passes its items as positional arguments to the next one; a final
    single-item result is returned unwrapped.

    Example::

        model = bridge.nn.Sequential([
            bridge.nn.Linear(2, 8), bridge.functional.relu,
            bridge.nn.Dropout(0.9), bridge.nn.Linear(8, 1),
        ])
        model(x, training=True)
        list(model.vars().keys())   # ['(Sequential)[0](Linear).b', ..., '(Sequential)[3]...w']
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the layers in order on ``args``; see the class docstring."""
        for layer in self:
            args = layer(*args, **local_kwargs(kwargs, layer))
            if not isinstance(args, tuple):
                args = (args,)
        return args[0] if len(args) == 1 else args
