"""Object-style training, data-parallel over a ``jax.sharding.Mesh`` of 8 CPU devices.

The devices exist only when ``XLA_FLAGS`` asks for them before JAX starts, so the training
runs in a separate process (``data_parallel_worker.py``) and the rest of the suite keeps
one device. The reference is the same training with the batch on one device.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("data_parallel_worker.py")
ROOT = WORKER.parents[2]


@pytest.fixture(scope="module")
def runs():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_worker_sees_eight_devices(runs):
    assert runs["devices"] == 8


def test_sharded_batch_runs_on_every_device(runs):
    assert runs["one_device"]["prediction_devices"] == 1
    assert runs["sharded"]["prediction_devices"] == 8
    # the weights written back by Jit are replicated over the mesh
    assert runs["sharded"]["weight_devices"] == 8


def test_sharded_training_gives_the_one_device_losses(runs):
    np.testing.assert_allclose(runs["sharded"]["losses"], runs["one_device"]["losses"],
                               rtol=1e-6)


def test_sharded_training_gives_the_one_device_variables(runs):
    """Weights, BatchNorm statistics and the dropout key, after four Adam steps."""
    one, sharded = runs["one_device"]["variables"], runs["sharded"]["variables"]
    assert sorted(one) == sorted(sharded)
    assert any("running_mean" in name for name in one) and any("_key" in name for name in one)
    for name in one:
        np.testing.assert_allclose(sharded[name], one[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_sharded_prediction_matches(runs):
    np.testing.assert_allclose(runs["sharded"]["prediction"], runs["one_device"]["prediction"],
                               rtol=1e-5, atol=1e-5)
