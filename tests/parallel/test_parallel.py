"""``bridge.Parallel`` and ``VarCollection.replicate`` on 8 CPU devices, against one device.

The devices exist only when ``XLA_FLAGS`` asks for them before JAX starts, so the scenarios
run in a separate process (``parallel_worker.py``) that returns, for each, the result of
``Parallel`` and an independent reference: plain ``jax.jit`` on the whole batch, plain
``BatchNorm`` on the whole batch for ``SyncedBatchNorm``, or numbers derived by hand.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("parallel_worker.py")
ROOT = WORKER.parents[2]
N = 8


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def outcome(results, name):
    """The worker's result for scenario ``name`` (its traceback fails the test)."""
    result = results[name]
    if "error" in result:
        pytest.fail(f"scenario {name} raised in the worker:\n{result['error']}")
    return result


def close(actual, expected, tol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def test_worker_sees_eight_devices(results):
    assert results["devices"] == N


# ----- inference ----------------------------------------------------------------------------
def test_concatenated_outputs_equal_the_whole_batch_result(results):
    scenario = outcome(results, "concat_inference")
    close(scenario["parallel"], scenario["reference"])


def test_outputs_stay_sharded_over_the_devices(results):
    scenario = outcome(results, "concat_inference")
    assert scenario["output_devices"] == N


@pytest.mark.parametrize("reduce", ["stacked", "first", "mean", "sum"])
def test_reduce_receives_the_outputs_stacked_per_device(results, reduce):
    """Identity keeps shape (8, 12, 4); ``x[0]`` is device 0's rows; mean/sum over devices."""
    scenario = outcome(results, "reducers")
    close(scenario["parallel"][reduce], scenario["reference"][reduce])


def test_each_output_leaf_is_reduced(results):
    scenario = outcome(results, "multiple_outputs")
    close(scenario["parallel"]["plus"], scenario["reference"]["plus"])
    close(scenario["parallel"]["minus"][0], scenario["reference"]["minus"][0])


def test_scalar_arguments_reach_every_device_whole(results):
    scenario = outcome(results, "broadcast_scalars")
    close(scenario["array_scalar"], scenario["reference"])
    close(scenario["python_scalar"], scenario["reference"])


def test_static_arguments_are_compile_time_constants(results):
    scenario = outcome(results, "static_arguments")
    close(scenario["parallel"], scenario["reference"])


def test_flag_keyword_arguments_reach_the_module(results):
    scenario = outcome(results, "keyword_arguments")
    close(scenario["parallel"], scenario["reference"])


# ----- BatchNorm ----------------------------------------------------------------------------
def test_batchnorm_eval_uses_the_running_statistics_and_keeps_them(results):
    scenario = outcome(results, "batchnorm_eval")
    close(scenario["parallel"], scenario["reference"])
    close(scenario["running_mean"], [[0.0, 1.0, 2.0, 3.0]])
    close(scenario["running_var"], [[2.0] * 4])


def test_batchnorm_training_normalizes_each_device_slice_on_its_own(results):
    scenario = outcome(results, "batchnorm_train")
    close(scenario["parallel"], scenario["reference"], tol=1e-5)


def test_per_device_statistics_are_kept_per_device_inside_the_block(results):
    scenario = outcome(results, "batchnorm_train")
    assert scenario["inside_shape"] == [N, 1, 4]
    assert scenario["inside_rows_differ"]


def test_replicate_averages_the_per_device_statistics_on_exit(results):
    scenario = outcome(results, "batchnorm_train")
    close(scenario["running_mean"], scenario["running_mean_reference"])
    close(scenario["running_var"], scenario["running_var_reference"])


def test_jit_of_parallel_gives_the_parallel_result(results):
    scenario = outcome(results, "jit_of_parallel")
    close(scenario["parallel"], scenario["reference"], tol=1e-5)
    close(scenario["running_mean"], scenario["running_mean_reference"])
    close(scenario["running_var"], scenario["running_var_reference"])


def test_synced_batchnorm_training_equals_batchnorm_on_the_whole_batch(results):
    scenario = outcome(results, "synced_batchnorm_train")
    for step in range(2):
        close(scenario["parallel"][step], scenario["reference"][step], tol=1e-5)


def test_synced_batchnorm_running_statistics_equal_the_whole_batch_ones(results):
    scenario = outcome(results, "synced_batchnorm_train")
    close(scenario["running_mean"], scenario["running_mean_reference"])
    close(scenario["running_var"], scenario["running_var_reference"])


def test_synced_batchnorm_eval_equals_batchnorm_eval(results):
    scenario = outcome(results, "synced_batchnorm_train")
    close(scenario["eval"], scenario["eval_reference"], tol=1e-5)


# ----- training -----------------------------------------------------------------------------
def test_training_with_averaged_gradients_gives_the_one_device_losses(results):
    """GradValues + Adam inside Parallel with SyncedBatchNorm, against plain JAX + optax."""
    scenario = outcome(results, "training_step")
    close(scenario["losses"], scenario["losses_reference"], tol=1e-5)


def test_training_with_averaged_gradients_gives_the_one_device_weights(results):
    scenario = outcome(results, "training_step")
    for name, value in scenario["params_reference"].items():
        close(scenario["params"][name], value, tol=1e-5)
    close(scenario["running_var"], scenario["running_var_reference"], tol=1e-5)


def test_ema_update_inside_parallel(results):
    scenario = outcome(results, "ema")
    for average, expected in zip(scenario["averages"], scenario["averages_reference"]):
        close(average, expected)
    assert scenario["step"] == 1


def test_ema_weights_used_inside_parallel(results):
    scenario = outcome(results, "ema")
    close(scenario["parallel"], scenario["reference"])


# ----- variables ----------------------------------------------------------------------------
def test_replicate_gives_each_device_its_own_key(results):
    """Device i holds ``split(key, 9)[i + 1]``, Objax's rule."""
    scenario = outcome(results, "random_state")
    np.testing.assert_array_equal(scenario["per_device"], scenario["per_device_reference"])


def test_each_device_draws_with_its_own_key(results):
    scenario = outcome(results, "random_state")
    close(scenario["draws"], scenario["draws_reference"])
    assert scenario["after_draw_changed"]


def test_replicate_leaves_the_key_split_once(results):
    """After the block the key is ``split(key, 9)[0]``, whatever the devices drew."""
    scenario = outcome(results, "random_state")
    np.testing.assert_array_equal(scenario["after"], scenario["after_reference"])


def test_trainvar_assigned_inside_gets_one_value_per_device(results):
    scenario = outcome(results, "assign_inside")
    close(scenario["inside"], scenario["inside_reference"])


def test_trainvar_assigned_inside_is_averaged_on_exit(results):
    scenario = outcome(results, "assign_inside")
    close(scenario["after"], scenario["after_reference"])


def test_values_return_uncommitted_to_one_device_on_exit(results):
    scenario = outcome(results, "assign_inside")
    assert scenario["after_committed"] is False
    assert scenario["after_devices"] == 1


def test_trainvar_and_its_trainref_are_one_variable(results):
    scenario = outcome(results, "assign_inside")
    close(scenario["shared"], scenario["shared_reference"])


def test_collectives_combine_the_devices_values(results):
    scenario = outcome(results, "collectives")
    for out, expected in zip(scenario["parallel"], scenario["reference"]):
        close(out, expected)


def test_gradients_through_collectives_follow_pmap(results):
    scenario = outcome(results, "collective_gradients")
    close(scenario["parallel"]["psum"], scenario["reference"]["psum"])
    close(scenario["parallel"]["pmean"], scenario["reference"]["pmean"])


def test_a_batch_that_does_not_divide_over_the_devices_is_refused(results):
    scenario = outcome(results, "indivisible_batch")
    assert scenario["message"] == (
        "Parallel: argument 0['images'] has shape (12, 3), whose first axis (the batch) does "
        "not divide into 8 equal slices, one per device.")
    assert scenario["unchanged"]
