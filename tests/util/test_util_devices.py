"""bridge.util's device helpers: pmap's placement, done with shardings."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bridge import util


def test_get_local_devices_is_jax_local_devices():
    assert util.get_local_devices() == jax.local_devices()


def test_map_to_device_keeps_values_and_places_row_i_on_device_i():
    n = jax.local_device_count()
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = util.map_to_device(x)
    np.testing.assert_array_equal(np.asarray(y), x)
    assert [s.device for s in y.addressable_shards] == util.get_local_devices()


def test_map_to_device_maps_every_leaf_of_a_pytree():
    tree = {"a": jnp.zeros((1, 2)), "b": [jnp.ones((1,))]}
    out = util.map_to_device(tree)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(tree)
    np.testing.assert_array_equal(out["b"][0], np.ones(1))


def test_map_to_device_rejects_more_rows_than_devices():
    n = jax.local_device_count()
    with pytest.raises(ValueError, match=rf"shape \({n + 1}, 2\)"):
        util.map_to_device(jnp.zeros((n + 1, 2)))


def test_multi_host_barrier_returns_in_a_single_process():
    util.multi_host_barrier()


def test_map_to_device_on_eight_devices_matches_pmap_placement():
    # pmap put x[i] on jax.local_devices()[i]; XLA_FLAGS must be set before JAX starts,
    # so this runs in a fresh interpreter.
    script = textwrap.dedent("""
        import jax, numpy as np
        from bridge import util
        x = np.arange(8 * 2).reshape(8, 2)
        y = util.map_to_device(x)
        for shard in y.addressable_shards:
            i = util.get_local_devices().index(shard.device)
            assert np.array_equal(np.asarray(shard.data), x[i:i + 1]), i
        assert len(util.map_to_device(x[:3]).sharding.device_set) == 3
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
