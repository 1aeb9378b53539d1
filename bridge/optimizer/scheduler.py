"""Learning-rate schedules, Objax style: ``sched(step) -> base_lr · multiplier(step)``.

This is Objax's ``objax.optimizer.scheduler`` module. A schedule is a plain object: call it
with the step number (a Python number or a traced array, so it works inside
``bridge.Jit``) and pass the result to an optimizer as its learning rate::

    sched = bridge.optimizer.scheduler.StepDecay(step_size=[30, 60], base_lr=0.1)
    opt(sched(step), grads)

Optax's schedules (``optax.cosine_decay_schedule(...)``, ...) are called the same way and
work just as well.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import jax.numpy as jnp

__all__ = ["Scheduler", "LinearAnnealing", "StepDecay"]


class Scheduler:
    """Base class: ``sched(step) = base_lr · multiplier(step)``.

    Subclasses define ``multiplier``. With ``base_lr=1`` (the default) a schedule returns
    the multiplier itself.
    """

    def __init__(self, base_lr: float = 1.0):
        self.base_lr = base_lr

    def multiplier(self, step: Any) -> Any:
        """The factor applied to ``base_lr`` at ``step``."""
        raise NotImplementedError(f"{type(self).__name__} does not define multiplier(step).")

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step`` (a number or an array)."""
        return self.base_lr * self.multiplier(step)


class LinearAnnealing(Scheduler):
    """Linear decay from ``base_lr`` at step 0 to ``min_lr`` at ``max_step``::

        lr(step) = base_lr - (base_lr - min_lr) · s / max_step

    where ``s = step mod max_step`` with ``is_cycle`` (the decay restarts every
    ``max_step`` steps) and ``s = min(step, max_step)`` without (it stays at ``min_lr``).

    Raises:
      ValueError: ``max_step`` is not positive, ``base_lr`` is not positive, or
        ``min_lr > base_lr``.

    Example::

        sched = LinearAnnealing(max_step=10, base_lr=1.0)
        [float(sched(i)) for i in (0, 5, 9)]      # [1.0, 0.5, 0.1]
    """

    def __init__(self, max_step: float, base_lr: float = 1.0, is_cycle: bool = True,
                 min_lr: float = 0.0):
        super().__init__(base_lr=base_lr)
        if not max_step > 0:
            raise ValueError(f"LinearAnnealing: max_step must be positive, got {max_step}.")
        if not base_lr > 0:
            raise ValueError(f"LinearAnnealing: base_lr must be positive, got {base_lr}.")
        if min_lr > base_lr:
            raise ValueError(f"LinearAnnealing: min_lr={min_lr} is above base_lr={base_lr}.")
        self.max_step = max_step
        self.is_cycle = is_cycle
        self.min_lr_multiplier = min_lr / base_lr

    def multiplier(self, step: Any) -> Any:
        """``1 - (1 - min_lr/base_lr) · s / max_step`` (see the class docstring for ``s``)."""
        s = jnp.remainder(step, self.max_step) if self.is_cycle else jnp.minimum(step,
                                                                                 self.max_step)
        return 1.0 - (1.0 - self.min_lr_multiplier) * s / self.max_step


class StepDecay(Scheduler):
    """Multiply the learning rate by ``gamma`` at regular steps or at given milestones::

        lr(step) = base_lr · gamma ** (step // step_size)             # step_size a number
        lr(step) = base_lr · gamma ** #{s in step_size : step >= s}   # a list of milestones

    Example::

        StepDecay(step_size=3, gamma=0.9)(7)            # 0.9 ** 2
        StepDecay(step_size=[3, 5, 8], gamma=0.9)(7)    # 0.9 ** 2
    """

    def __init__(self, step_size: Union[float, Sequence[float]], base_lr: float = 1.0,
                 gamma: float = 0.1):
        super().__init__(base_lr=base_lr)
        if not isinstance(step_size, (list, tuple)) and not step_size > 0:
            raise ValueError(f"StepDecay: step_size must be positive, got {step_size}.")
        self.step_size = step_size
        self.gamma = gamma

    def multiplier(self, step: Any) -> Any:
        """``gamma`` to the number of decays that happened by ``step``."""
        if isinstance(self.step_size, (list, tuple)):
            decays = jnp.sum(jnp.greater_equal(step, jnp.asarray(self.step_size)))
        else:
            decays = jnp.floor_divide(step, self.step_size)
        return self.gamma ** decays
