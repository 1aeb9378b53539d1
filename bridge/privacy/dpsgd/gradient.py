"""``PrivateGradValues``: Objax's DP-SGD gradient module, on ``bridge.pure.clipped_grad``.

This is Objax's module path ``objax.privacy.dpsgd.gradient``; the class lives here so that it
prints under it, as Objax's does.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax

from bridge.facades._gather import declared_collection, differentiated_first, read
from bridge.pure import changed_entries, clipped_grad, functionalize
from bridge.random import DEFAULT_GENERATOR, Generator
from bridge.state import Module, RandomState, TrainVar, VarCollection
from bridge.state._access import commit, split_key, storage_of
from bridge.state._collection import as_collection
from bridge.state._repr import arguments_repr, class_path, function_repr

__all__ = ["PrivateGradValues"]


class PrivateGradValues(Module):
    """Differentially private gradients (DP-SGD) of ``f`` with respect to the ``TrainVar``s
    of ``vc``, together with ``f``'s values, Objax style.

    The batch is cut into microbatches of ``microbatch`` consecutive examples; the gradient
    of each microbatch is clipped to L2 norm ``l2_norm_clip`` (global norm over all the
    ``TrainVar``s: scaled by ``l2_norm_clip / max(norm, l2_norm_clip)``), the clipped
    gradients are averaged, and Gaussian noise of standard deviation
    ``noise_multiplier * l2_norm_clip / number_of_microbatches`` is added to every entry.
    The math is ``bridge.pure.clipped_grad``: per-microbatch gradients are not formed for
    dense layers (their norms come from the layer inputs and output gradients), so the
    cost stays close to that of the ordinary batch gradient.

    Args:
      f: the loss, written for a batch: it is called on one microbatch at a time (every
        batched argument keeps its batch axis, of size ``microbatch``). It returns a
        scalar, or a tuple/list whose first element is the scalar to differentiate.
      vc: the variables; only its ``TrainVar``s get gradients. Other variables ``f`` uses
        are constants; what ``f`` assigns to them is written back after the call, reduced
        over microbatches with each variable's ``reduce`` (the mean by default), as
        ``Vectorize`` does. Every ``RandomState`` gives each microbatch its own key.
      noise_multiplier: the ratio of the noise standard deviation to ``l2_norm_clip``
        (before dividing by the number of microbatches). ``0`` gives the exact clipped
        mean gradient and draws no key.
      l2_norm_clip: the maximal L2 norm of a microbatch gradient (``>= 0``; ``0`` clips
        every gradient to zero).
      microbatch: examples per microbatch; the batch size must be a multiple of it.
      batch_axis: the batch axis of each positional argument of ``f``; as in Objax, every
        entry must be ``0`` (all arguments are batched on their first axis). Arguments
        beyond its length are batched on axis 0 too, so the default ``(0,)`` fits any
        number of arguments. For other layouts, or arguments every microbatch sees
        whole, use ``bridge.pure.clipped_grad``, which takes any axis or ``None``.
      keygen: the ``bridge.random.Generator`` the noise keys come from (one key per call,
        split over the gradients). Its variable is in ``self.vars()``: pass
        ``gv.vars()`` (not only the model's) to an enclosing ``Jit``.
      use_norm_accumulation: accepted for Objax compatibility and ignored: the
        memory-saving computation it selected in Objax is always used where it applies.
      method: ``'auto'`` (default) or ``'materialize'`` (plain per-microbatch gradients,
        as a reference); see ``bridge.pure.clipped_grad``.

    Returns (when called like ``f``, keyword arguments passed to every call unchanged):
      ``(gradients, values)``: ``gradients`` is a list with one array per ``TrainVar`` in
      ``vc`` order; ``values`` is the list of everything ``f`` returned, averaged over
      microbatches.

    Raises:
      ValueError: at construction, a negative ``l2_norm_clip``, a ``microbatch`` that is
        not a positive integer or a non-zero ``batch_axis`` entry; when called, more
        ``batch_axis`` entries than arguments, a batch size that is not a multiple of
        ``microbatch``, or batched arguments of different sizes.
      TypeError: ``f``'s first output is not a scalar.

    Example::

        model = bridge.nn.Sequential([bridge.nn.Linear(784, 256), bridge.functional.relu,
                                      bridge.nn.Linear(256, 10)])
        loss = lambda x, y: bridge.functional.loss.cross_entropy_logits_sparse(
            model(x), y).mean()
        gv = bridge.privacy.PrivateGradValues(loss, model.vars(), noise_multiplier=1.1,
                                              l2_norm_clip=1.0)
        opt = bridge.optimizer.SGD(model.vars())

        def train_op(x, y):
            g, v = gv(x, y)
            opt(0.1, g)
            return v

        train_op = bridge.Jit(train_op, gv.vars() + opt.vars())
    """

    def __init__(self, f: Callable, vc: VarCollection, noise_multiplier: float,
                 l2_norm_clip: float, microbatch: int = 1,
                 batch_axis: Sequence[Optional[int]] = (0,),
                 keygen: Generator = DEFAULT_GENERATOR, use_norm_accumulation: bool = False,
                 method: str = "auto"):
        if not all(a == 0 for a in batch_axis):
            raise ValueError(f"PrivateGradValues: batch_axis={tuple(batch_axis)}, but every "
                             "argument must be batched on axis 0 (every entry 0), as in Objax. "
                             "bridge.pure.clipped_grad takes other axes and None.")
        self.f = f
        self.vc = vc = as_collection(vc, "PrivateGradValues: vc")
        self.keygen = keygen
        self.noise_multiplier = noise_multiplier
        self.l2_norm_clip = l2_norm_clip
        self.microbatch = microbatch
        self.batch_axis = tuple(batch_axis)
        self.method = method
        self._storages, self._n_train = differentiated_first(
            vc.subset(TrainVar), declared_collection(f, vc))
        self._random = [i for i, v in enumerate(self._storages) if isinstance(v, RandomState)]
        self._pure = functionalize(f, self._storages, strict_reads=False,
                                   owner=f"PrivateGradValues({getattr(f, '__qualname__', f)!r})")
        # Fails early on bad settings (the pure function is rebuilt per call signature).
        clipped_grad(f, l2_norm_clip, microbatch, noise_multiplier=noise_multiplier,
                     method=method)

    def _loss(self, kwargs: dict) -> Callable:
        """One microbatch's loss as a pure function of the values, for ``clipped_grad``."""
        random = set(self._random)

        def loss(train_values, other_values, keys, *args):
            values = list(train_values) + list(other_values)
            for i, k in zip(self._random, keys):
                values[i] = k[0]  # the key of the microbatch's first example
            output, new_values = self._pure(values, *args, **kwargs)
            changes = {i: v for i, v in changed_entries(values, new_values).items()
                       if i not in random}
            return output, changes

        return loss

    def reshape_microbatch(self, x: jax.Array) -> jax.Array:
        """``x`` with its batch axis split into microbatches.

        Args:
          x: an array of shape ``(B, ...)`` with ``B`` a multiple of ``microbatch``.

        Returns:
          The same entries as an array of shape ``(B // microbatch, microbatch, ...)``:
          row ``u`` holds the examples of microbatch ``u``.

        Raises:
          ValueError: ``B`` is not a multiple of ``microbatch``.

        Example::

            gv = PrivateGradValues(loss, model.vars(), 1.1, 1.0, microbatch=2)
            gv.reshape_microbatch(jnp.zeros((8, 3))).shape      # (4, 2, 3)
        """
        batch = x.shape[0]
        if batch % self.microbatch:
            raise ValueError(f"PrivateGradValues.reshape_microbatch: a batch of {batch} is "
                             f"not a multiple of microbatch={self.microbatch}.")
        return x.reshape(batch // self.microbatch, self.microbatch, *x.shape[1:])

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list, list]:
        if not args:
            raise ValueError("PrivateGradValues needs at least one positional argument "
                             "(batched on axis 0).")
        if len(self.batch_axis) > len(args):
            raise ValueError(f"PrivateGradValues: batch_axis={self.batch_axis} has "
                             f"{len(self.batch_axis)} entries for {len(args)} arguments.")
        axes = (0,) * len(args)
        n = jax.tree_util.tree_leaves(args[0])[0].shape[0]
        values = read(self._storages)
        # Keys are drawn without advancing the RandomStates; the next keys are committed
        # with the reduced state changes, so a call that raises changes nothing.
        rngs = [self._storages[i] for i in self._random]
        drawn = [split_key(values[i], n) for i in self._random]
        key = None
        if self.noise_multiplier != 0:
            rngs.append(self.keygen.key)
            next_key, (key,) = split_key(self.keygen.key.value, 1)
            drawn.append((next_key, None))
        g = clipped_grad(self._loss(kwargs), self.l2_norm_clip, self.microbatch,
                         batch_axis=(None, 0) + axes,
                         noise_multiplier=self.noise_multiplier, has_aux=True,
                         method=self.method)
        n_train = self._n_train
        grads, out_values, changes = g(values[:n_train], values[n_train:],
                                       [keys for _, keys in drawn[:len(self._random)]], *args,
                                       key=key)
        targets, new_values = rngs, [next_key for next_key, _ in drawn]
        for i, stacked in changes.items():
            value = self._storages[i].reduced(stacked)
            if value is not None:
                targets.append(self._storages[i])
                new_values.append(value)
        commit(targets, new_values, owner="PrivateGradValues")
        return list(grads), out_values

    def vars(self, scope: str = "") -> VarCollection:
        out = VarCollection((scope + k, v) for k, v in self.vc.items())
        present = {id(storage_of(v)) for v in out.values()}
        keygen_scope = f"{scope}({type(self).__name__}).keygen"
        out.update((k, v) for k, v in self.keygen.vars(keygen_scope).items()
                   if id(storage_of(v)) not in present)
        return out

    def __repr__(self) -> str:
        args = arguments_repr(noise_multiplier=self.noise_multiplier,
                              l2_norm_clip=self.l2_norm_clip, microbatch=self.microbatch,
                              batch_axis=self.batch_axis)
        return f"{class_path(self)}(f={function_repr(self.f)}, {args})"

