"""``bridge.optimizer.scheduler`` (Objax's learning-rate schedules) against their formulas
written with NumPy, and Objax 1.8's own expected values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.optimizer.scheduler import LinearAnnealing, Scheduler, StepDecay

STEPS = np.arange(25)


def test_linear_annealing_cycles_by_default():
    sched = LinearAnnealing(max_step=10, base_lr=2.0, min_lr=0.5)
    expected = 2.0 - 1.5 * (STEPS % 10) / 10
    np.testing.assert_allclose([sched(s) for s in STEPS], expected, rtol=1e-6)


def test_linear_annealing_without_cycle_stays_at_min_lr():
    sched = LinearAnnealing(max_step=10, base_lr=2.0, is_cycle=False, min_lr=0.5)
    expected = 2.0 - 1.5 * np.minimum(STEPS, 10) / 10
    np.testing.assert_allclose([sched(s) for s in STEPS], expected, rtol=1e-6)


def test_linear_annealing_matches_objax_test_values():
    sched = LinearAnnealing(max_step=10, base_lr=1, is_cycle=True, min_lr=0)
    np.testing.assert_allclose([sched(step=i) for i in range(10)],
                               [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], rtol=1e-6)


def test_step_decay_every_step_size_steps():
    sched = StepDecay(step_size=3, base_lr=0.5, gamma=0.9)
    np.testing.assert_allclose([sched(s) for s in STEPS], 0.5 * 0.9 ** (STEPS // 3), rtol=1e-6)


def test_step_decay_at_milestones():
    milestones = [3, 5, 8]
    sched = StepDecay(step_size=milestones, base_lr=0.5, gamma=0.9)
    decays = np.array([sum(s >= m for m in milestones) for s in STEPS])
    np.testing.assert_allclose([sched(s) for s in STEPS], 0.5 * 0.9 ** decays, rtol=1e-6)


def test_schedules_work_on_traced_steps():
    schedules = [LinearAnnealing(max_step=7, base_lr=0.3, min_lr=0.1),
                 StepDecay(step_size=4, base_lr=0.3, gamma=0.5),
                 StepDecay(step_size=(2, 9), base_lr=0.3, gamma=0.5)]
    for sched in schedules:
        traced = jax.jit(jax.vmap(sched))(jnp.asarray(STEPS))
        np.testing.assert_allclose(traced, [sched(int(s)) for s in STEPS], rtol=1e-6)


def test_schedule_drives_an_optimizer_inside_jit():
    w = bridge.TrainVar(jnp.zeros(()))
    opt = bridge.optimizer.SGD(bridge.VarCollection({"w": w}))
    sched = StepDecay(step_size=2, base_lr=1.0, gamma=0.5)
    step = bridge.Jit(lambda i: opt(sched(i), [jnp.ones(())]), opt.vars())
    for i in range(5):
        step(jnp.asarray(i))
    np.testing.assert_allclose(w.value, -(1 + 1 + 0.5 + 0.5 + 0.25))


def test_custom_scheduler_defines_the_multiplier():
    class Halving(Scheduler):
        def multiplier(self, step):
            return 0.5 ** step

    np.testing.assert_allclose(Halving(base_lr=4.0)(3), 0.5)
    with pytest.raises(NotImplementedError, match="Scheduler does not define multiplier"):
        Scheduler()(0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_lr=2.0 is above base_lr=1.0"):
        LinearAnnealing(max_step=10, base_lr=1.0, min_lr=2.0)
    with pytest.raises(ValueError, match="max_step must be positive"):
        LinearAnnealing(max_step=0)
    with pytest.raises(ValueError, match="base_lr must be positive"):
        LinearAnnealing(max_step=10, base_lr=0.0)
    with pytest.raises(ValueError, match="step_size must be positive"):
        StepDecay(step_size=0)
