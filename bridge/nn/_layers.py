"""Ready-made layers: dense, convolutions, normalizations, dropout, moving averages and
``Sequential``, with Objax's constructors, variable names and semantics.

Every layer prints as the call that builds it (``bridge.nn.Linear(nin=2, nout=3,
use_bias=True, w_init=xavier_normal(*, gain=1))``), Objax's format under bridge's paths.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from bridge.functional._padding import ConvPadding, ConvPaddingInt, to_padding, to_tuple
from bridge.nn.init import kaiming_normal, xavier_normal
from bridge.random import DEFAULT_GENERATOR, Generator
from bridge.state import Module, ModuleList, StateVar, TrainVar
from bridge.state._access import commit
from bridge.state._module import local_kwargs
from bridge.state._repr import arguments_repr, class_path, function_repr

__all__ = ["BatchNorm", "BatchNorm0D", "BatchNorm1D", "BatchNorm2D", "Conv2D",
           "ConvTranspose2D", "Dropout", "ExponentialMovingAverage", "GroupNorm",
           "GroupNorm0D", "GroupNorm1D", "GroupNorm2D", "Linear", "MovingAverage",
           "Sequential"]

Initializer = Callable[[tuple[int, ...]], jax.Array]


def _layer_repr(layer: Module, w_init: Optional[Callable] = None, **arguments: Any) -> str:
    """``bridge.nn.Name(a=1, b=(2, 3)[, w_init=f(*, gain=1)])``."""
    text = arguments_repr(**arguments)
    if w_init is not None:
        text += f", w_init={function_repr(w_init)}"
    return f"{class_path(layer)}({text})"


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

    def __repr__(self) -> str:
        nin, nout = self.w.value.shape
        return _layer_repr(self, self.w_init, nin=nin, nout=nout, use_bias=self.b is not None)


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
            raise ValueError(f"{type(self).__name__}: nin ({nin}) and nout ({nout}) must be "
                             f"divisible by groups ({groups}).")
        # Every argument is checked before the weights are drawn, so a bad one leaves the
        # random generator where it was.
        kernel = to_tuple(k, 2)
        padding, strides, dilations = (to_padding(padding, 2), to_tuple(strides, 2),
                                       to_tuple(dilations, 2))
        self.w_init = w_init
        self.b = TrainVar(jnp.zeros((nout, 1, 1))) if use_bias else None
        self.w = TrainVar(w_init((*kernel, nin // groups, nout)))
        self.padding = padding
        self.strides = strides
        self.dilations = dilations
        self.groups = groups

    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolve: shape ``(N, nin, H, W)`` → ``(N, nout, H', W')``."""
        nin = self.w.value.shape[2] * self.groups
        _check_input(self, x, nin)
        y = jax.lax.conv_general_dilated(
            x, self.w.value, self.strides, self.padding, rhs_dilation=self.dilations,
            feature_group_count=self.groups, dimension_numbers=("NCHW", "HWIO", "NCHW"))
        if self.b is not None:
            y = y + self.b.value
        return y

    def __repr__(self) -> str:
        kh, kw, nin_per_group, nout = self.w.value.shape
        return _layer_repr(self, self.w_init, nin=nin_per_group * self.groups, nout=nout,
                           k=(kh, kw), strides=self.strides, dilations=self.dilations,
                           groups=self.groups, padding=self.padding,
                           use_bias=self.b is not None)


def _check_input(layer: Module, x: jax.Array, nin: int) -> None:
    if jnp.ndim(x) != 4 or jnp.shape(x)[1] != nin:
        raise ValueError(f"{type(layer).__name__} expects input of shape (N, {nin}, H, W), "
                         f"got {jnp.shape(x)}.")


class ConvTranspose2D(Conv2D):
    """A 2-D transposed convolution over NCHW images: the gradient of a ``Conv2D`` with
    respect to its input, used to upsample (as TensorFlow's ``Conv2DTranspose``).

    Args:
      nin: input channels.
      nout: output channels.
      k: kernel size, an int or ``(kh, kw)``.
      strides: upsampling factor, an int or a pair.
      dilations: kernel dilation, an int or a pair.
      padding: ``ConvPadding.SAME``/``VALID`` (or the strings), an int, one ``(lo, hi)``
        pair for both dimensions, or two pairs, as taken by ``jax.lax.conv_transpose``.
      use_bias: add the bias ``b`` (otherwise ``self.b`` is ``None``).
      w_init: called with the kernel shape ``(kh, kw, nout, nin)``: the kernel of the
        ``Conv2D(nout, nin, k)`` this layer transposes (so fan-in is ``kh * kw * nout``).

    Variables: ``b`` (zeros, shape ``(nout, 1, 1)``) then ``w`` (``(kh, kw, nout, nin)``).
    Input ``(N, nin, H, W)``, output ``(N, nout, H', W')``: with ``SAME`` padding
    ``H' = H * stride``, with ``VALID`` ``H' = (H - 1) * stride + kh``. A subclass of
    ``Conv2D`` (with ``groups == 1``), as in Objax; unlike PyTorch's ``ConvTranspose2d``
    its padding is that of the transposed convolution's output.

    Example::

        up = bridge.nn.ConvTranspose2D(16, 3, 3, strides=2)
        up(jnp.ones((8, 16, 16, 16))).shape   # (8, 3, 32, 32)
    """

    def __init__(self, nin: int, nout: int, k: Union[int, Sequence[int]],
                 strides: Union[int, Sequence[int]] = 1,
                 dilations: Union[int, Sequence[int]] = 1,
                 padding: ConvPaddingInt = ConvPadding.SAME, use_bias: bool = True,
                 w_init: Initializer = kaiming_normal):
        super().__init__(nout, nin, k, strides=strides, dilations=dilations, padding=padding,
                         use_bias=False, w_init=w_init)
        self.b = TrainVar(jnp.zeros((nout, 1, 1))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Transposed convolution: shape ``(N, nin, H, W)`` → ``(N, nout, H', W')``."""
        _check_input(self, x, self.w.value.shape[3])
        y = jax.lax.conv_transpose(
            x, self.w.value, self.strides, self.padding, rhs_dilation=self.dilations,
            dimension_numbers=("NCHW", "HWIO", "NCHW"), transpose_kernel=True)
        if self.b is not None:
            y = y + self.b.value
        return y

    def __repr__(self) -> str:
        kh, kw, nout, nin = self.w.value.shape
        return _layer_repr(self, self.w_init, nin=nin, nout=nout, k=(kh, kw),
                           strides=self.strides, dilations=self.dilations,
                           padding=self.padding, use_bias=self.b is not None)


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
            # Both statistics or neither (see bridge.state._access.commit).
            commit([self.running_mean, self.running_var],
                   [self.running_mean.value + rate * (mean - self.running_mean.value),
                    self.running_var.value + rate * (var - self.running_var.value)],
                   owner=type(self).__name__)
        else:
            mean, var = self.running_mean.value, self.running_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.gamma.value + self.beta.value

    def __repr__(self) -> str:
        return _layer_repr(self, dims=self.beta.value.shape, redux=self.redux,
                           momentum=self.momentum, eps=self.eps)


class _BatchNormForRank(BatchNorm):
    """The repr shared by ``BatchNorm0D``/``1D``/``2D``."""

    def __repr__(self) -> str:
        return _layer_repr(self, nin=self.beta.value.shape[1], momentum=self.momentum,
                           eps=self.eps)


class BatchNorm0D(_BatchNormForRank):
    """``BatchNorm`` for ``(N, nin)`` inputs: statistics per feature, shape ``(1, nin)``.

    Example::

        bridge.nn.BatchNorm0D(4)(jnp.ones((8, 4)), training=False).shape   # (8, 4)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin), (0,), momentum, eps)


class BatchNorm1D(_BatchNormForRank):
    """``BatchNorm`` for ``(N, nin, L)`` inputs: per channel, shape ``(1, nin, 1)``.

    Example::

        bridge.nn.BatchNorm1D(4)(jnp.ones((8, 4, 10)), training=True).shape   # (8, 4, 10)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin, 1), (0, 2), momentum, eps)


class BatchNorm2D(_BatchNormForRank):
    """``BatchNorm`` for NCHW inputs: per channel, statistics of shape ``(1, nin, 1, 1)``.

    Example::

        bn = bridge.nn.BatchNorm2D(16)
        bn(jnp.ones((8, 16, 5, 5)), training=True).shape   # (8, 16, 5, 5)
    """

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6):
        super().__init__((1, nin, 1, 1), (0, 2, 3), momentum, eps)


class GroupNorm(Module):
    """Group normalization (Wu & He, 2018): each example's channels are split into
    ``groups`` groups, each normalized by its own mean and (biased) variance over its
    channels and positions, then scaled by ``gamma`` and shifted by ``beta`` per channel.

    The statistics are those of the example itself, so training and evaluation compute
    the same thing and the layer keeps no running state.

    Args:
      nin: channels (axis 1); must be divisible by ``min(groups, nin)``.
      rank: rank of the input, ``(N, nin, ...)``: 2 for ``(N, C)``, 4 for NCHW.
      groups: number of groups, reduced to ``nin`` if larger.
      eps: added to the variance before the square root.

    Variables, in order: ``gamma`` (ones) then ``beta`` (zeros), both TrainVars of shape
    ``(1, nin, 1, ...)`` with ``rank`` axes.

    Example::

        gn = bridge.nn.GroupNorm(8, rank=4, groups=2)
        gn(jnp.ones((16, 8, 5, 5))).shape   # (16, 8, 5, 5)
    """

    def __init__(self, nin: int, rank: int, groups: int = 32, eps: float = 1e-5):
        groups = min(groups, nin)
        if nin % groups:
            raise ValueError(f"{type(self).__name__}: nin ({nin}) must be divisible by groups "
                             f"({groups}).")
        self.nin = nin
        self.groups = groups
        self.eps = eps
        # Axes of the per-group statistics once the input is shaped (N, groups, nin // groups, ...).
        self.redux = tuple(range(2, rank + 1))
        shape = (1, nin) + (1,) * (rank - 2)
        self.gamma = TrainVar(jnp.ones(shape))
        self.beta = TrainVar(jnp.zeros(shape))

    def __call__(self, x: jax.Array, training: bool = True) -> jax.Array:
        """Normalize ``x`` (same shape out). ``training`` is ignored; it is accepted so
        that the layer can replace a ``BatchNorm``."""
        del training
        rank = len(self.gamma.value.shape)
        if jnp.ndim(x) != rank or jnp.shape(x)[1] != self.nin:
            raise ValueError(f"{type(self).__name__} expects input of rank {rank} with "
                             f"{self.nin} channels on axis 1, got shape {jnp.shape(x)}.")
        grouped = jnp.reshape(x, (-1, self.groups, self.nin // self.groups) + x.shape[2:])
        mean = jnp.mean(grouped, axis=self.redux, keepdims=True)
        var = jnp.var(grouped, axis=self.redux, keepdims=True)
        normalized = jnp.reshape((grouped - mean) * jax.lax.rsqrt(var + self.eps), x.shape)
        return normalized * self.gamma.value + self.beta.value

    def __repr__(self) -> str:
        return _layer_repr(self, nin=self.nin, rank=len(self.gamma.value.shape),
                           groups=self.groups, eps=self.eps)


class _GroupNormForRank(GroupNorm):
    """The repr shared by ``GroupNorm0D``/``1D``/``2D``."""

    def __repr__(self) -> str:
        return _layer_repr(self, nin=self.nin, groups=self.groups, eps=self.eps)


class GroupNorm0D(_GroupNormForRank):
    """``GroupNorm`` for ``(N, nin)`` inputs: each group of features normalized per example.

    Example::

        bridge.nn.GroupNorm0D(8, groups=2)(jnp.ones((4, 8))).shape   # (4, 8)
    """

    def __init__(self, nin: int, groups: int = 32, eps: float = 1e-5):
        super().__init__(nin, rank=2, groups=groups, eps=eps)


class GroupNorm1D(_GroupNormForRank):
    """``GroupNorm`` for ``(N, nin, L)`` inputs.

    Example::

        bridge.nn.GroupNorm1D(8, groups=2)(jnp.ones((4, 8, 16))).shape   # (4, 8, 16)
    """

    def __init__(self, nin: int, groups: int = 32, eps: float = 1e-5):
        super().__init__(nin, rank=3, groups=groups, eps=eps)


class GroupNorm2D(_GroupNormForRank):
    """``GroupNorm`` for NCHW inputs.

    Example::

        bridge.nn.GroupNorm2D(32)(jnp.ones((4, 64, 8, 8))).shape   # (4, 64, 8, 8)
    """

    def __init__(self, nin: int, groups: int = 32, eps: float = 1e-5):
        super().__init__(nin, rank=4, groups=groups, eps=eps)


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

    def __repr__(self) -> str:
        return _layer_repr(self, keep=self.keep)


class MovingAverage(Module):
    """The mean of the last ``buffer_size`` inputs.

    Each call pushes ``x`` into a buffer of the last ``buffer_size`` inputs (dropping the
    oldest) and returns the buffer's mean. The buffer starts filled with ``init_value``.

    Args:
      shape: shape of each input.
      buffer_size: number of inputs averaged.
      init_value: initial content of the buffer.

    Variables: ``buffer`` (StateVar, shape ``(buffer_size, *shape)``, float32); inputs are
    stored in its dtype.

    Example::

        ma = bridge.nn.MovingAverage((1,), buffer_size=2)
        ma(jnp.array([2.])), ma(jnp.array([4.]))   # [1.], [3.]
    """

    def __init__(self, shape: tuple[int, ...], buffer_size: int, init_value: float = 0):
        self.init_value = init_value
        self.buffer = StateVar(jnp.zeros((buffer_size, *shape)) + init_value)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Push ``x`` (shape ``shape``) and return the mean of the buffer (shape ``shape``)."""
        buffer = self.buffer.value
        if jnp.shape(x) != buffer.shape[1:]:
            raise ValueError(f"MovingAverage of shape {buffer.shape[1:]} got an input of "
                             f"shape {jnp.shape(x)}.")
        x = jnp.asarray(x, buffer.dtype)
        self.buffer.value = jnp.concatenate([buffer[1:], x[None]])
        return jnp.mean(self.buffer.value, axis=0)

    def __repr__(self) -> str:
        buffer_size, *shape = self.buffer.value.shape
        return _layer_repr(self, shape=tuple(shape), buffer_size=buffer_size,
                           init_value=self.init_value)


class ExponentialMovingAverage(Module):
    """An exponential moving average of the inputs: ``avg ← momentum * avg + (1 - momentum) * x``.

    Args:
      shape: shape of each input.
      momentum: weight of the past average.
      init_value: initial average.

    Variables: ``avg`` (StateVar, shape ``shape``, float32); the update is computed as
    ``avg + (avg - x) * (momentum - 1)`` and stored in ``avg``'s dtype.

    Example::

        ema = bridge.nn.ExponentialMovingAverage((1,), momentum=0.9)
        ema(jnp.array([10.]))   # [1.]
    """

    def __init__(self, shape: tuple[int, ...], momentum: float = 0.999, init_value: float = 0):
        self.momentum = momentum
        self.init_value = init_value
        self.avg = StateVar(jnp.zeros(shape) + init_value)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Move the average towards ``x`` and return it (shape ``shape``)."""
        avg = self.avg.value
        self.avg.value = (avg + (avg - x) * (self.momentum - 1)).astype(avg.dtype)
        return self.avg.value

    def __repr__(self) -> str:
        return _layer_repr(self, shape=self.avg.value.shape, momentum=self.momentum,
                           init_value=self.init_value)


class Sequential(ModuleList):
    """Layers (modules or plain functions) applied one after another.

    Keyword arguments of a call reach only the layers whose signature accepts them
    (``training`` goes to ``BatchNorm`` and ``Dropout``, not to ``Linear``). A layer that
    returns a tuple passes its items as positional arguments to the next one; the last
    layer's result is returned as it is. An empty ``Sequential`` returns its argument (or
    its arguments, as a tuple, if there are several).

    When a layer raises, the exception gets a note naming the layer's position and repr.

    Example::

        model = bridge.nn.Sequential([
            bridge.nn.Linear(2, 8), bridge.functional.relu,
            bridge.nn.Dropout(0.9), bridge.nn.Linear(8, 1),
        ])
        model(x, training=True)
        list(model.vars().keys())   # ['(Sequential)[0](Linear).b', ..., '(Sequential)[3]...w']
    """

    @staticmethod
    def run_layer(layer: int, f: Callable, args: Sequence[Any], kwargs: dict) -> Any:
        """Call ``f(*args, **kwargs it accepts)``, the ``layer``-th layer of a Sequential.

        An exception keeps its type and message and gains the note
        ``"in Sequential layer[i]: <repr of f>"``.
        """
        try:
            return f(*args, **local_kwargs(kwargs, f))
        except Exception as error:
            error.add_note(f"in Sequential layer[{layer}]: {_entry_repr(f)}")
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the layers in order on ``args``; see the class docstring."""
        if not self:
            return args if len(args) > 1 else args[0]
        last = len(self) - 1
        for i in range(last):
            args = self.run_layer(i, self[i], args, kwargs)
            if not isinstance(args, tuple):
                args = (args,)
        return self.run_layer(last, self[last], args, kwargs)

    def __repr__(self) -> str:
        entries = "\n".join(f"  [{i}] " + _entry_repr(layer).replace("\n", "\n  ")
                            for i, layer in enumerate(self))
        return f"{class_path(self)}(\n{entries}\n)"


def _entry_repr(layer: Any) -> str:
    """A module prints its own repr, a plain function its name and keyword defaults."""
    if callable(layer) and not isinstance(layer, Module):
        return function_repr(layer)
    return repr(layer)
