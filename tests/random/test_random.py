"""bridge.random: keys drawn from a RandomState, matching jax.random."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


def key_sequence(seed, n):
    """The keys a Generator(seed) hands out, computed with plain jax.random."""
    key, out = jax.random.PRNGKey(seed), []
    for _ in range(n):
        key, sub = jax.random.split(key, 2)
        out.append(sub)
    return out


def test_generator_draws_the_split_sequence():
    gen = bridge.random.Generator(seed=5)
    for expected in key_sequence(5, 3):
        np.testing.assert_array_equal(gen(), expected)


def test_generator_vars_name_its_key():
    assert list(bridge.random.Generator().vars().keys()) == ["(Generator)._key"]


def test_uniform_takes_the_generator_by_position_as_objax():
    gen = bridge.random.Generator(seed=2)
    expected = jax.random.uniform(key_sequence(2, 1)[0], (3,))
    np.testing.assert_array_equal(bridge.random.uniform((3,), gen), expected)


def test_generator_repr_shows_its_seed():
    assert repr(bridge.random.Generator(seed=123)) == "bridge.random.Generator(seed=123)"


def test_importing_bridge_does_not_start_jax_backends():
    # The default generator makes its key on first use, so XLA_FLAGS set after
    # `import bridge` (as Objax's multi-device tests do) still take effect.
    import subprocess
    import sys

    code = ("import bridge, jax._src.xla_bridge as xb; "
            "print(xb.backends_are_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_normal_matches_jax_random_normal():
    gen = bridge.random.Generator(seed=1)
    (key,) = key_sequence(1, 1)
    np.testing.assert_allclose(bridge.random.normal((3, 2), mean=1.0, stddev=2.0, generator=gen),
                               1.0 + 2.0 * jax.random.normal(key, (3, 2)))


def test_uniform_and_randint_ranges():
    gen = bridge.random.Generator(seed=2)
    u = bridge.random.uniform((1000,), low=-1.0, high=3.0, generator=gen)
    assert float(u.min()) >= -1.0 and float(u.max()) < 3.0
    r = bridge.random.randint((1000,), low=0, high=4, generator=gen)
    assert r.dtype == jnp.int32 and set(np.unique(r).tolist()) == {0, 1, 2, 3}


# Standard deviation of a unit normal truncated to [-2, 2]:
# scipy.stats.truncnorm.std(-2, 2) = 0.8796256610342398.
TRUNCATED_UNIT_STD = 0.8796256610342398


def test_truncated_normal_is_the_truncated_unit_normal_times_stddev():
    """Objax's rule: no variance correction, so the std is stddev * 0.8796."""
    gen = bridge.random.Generator(seed=3)
    x = bridge.random.truncated_normal((200_000,), stddev=0.5, generator=gen)
    assert abs(float(x.std()) - 0.5 * TRUNCATED_UNIT_STD) < 0.005
    assert float(jnp.abs(x).max()) <= 2 * 0.5
    assert float(jnp.abs(x).max()) > 2 * 0.5 * 0.95


def test_truncated_normal_bounds_are_in_units_of_stddev():
    gen = bridge.random.Generator(seed=4)
    x = bridge.random.truncated_normal((100_000,), stddev=2.0, lower=-3, upper=1,
                                       generator=gen)
    assert float(x.min()) >= -6.0 and float(x.max()) <= 2.0
    assert float(x.min()) < -5.5 and float(x.max()) > 1.9


def test_truncated_normal_matches_jax_random_with_the_same_key():
    gen, twin = bridge.random.Generator(seed=5), bridge.random.Generator(seed=5)
    x = bridge.random.truncated_normal((7,), stddev=0.3, generator=gen)
    expected = 0.3 * jax.random.truncated_normal(twin(), -2, 2, shape=(7,))
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_seed_makes_draws_repeatable():
    gen = bridge.random.Generator(seed=0)
    first = bridge.random.normal((4,), generator=gen)
    gen.seed(0)
    np.testing.assert_array_equal(bridge.random.normal((4,), generator=gen), first)


def test_random_inside_jit_changes_per_call_when_declared():
    gen = bridge.random.Generator(seed=0)
    draw = bridge.Jit(lambda: bridge.random.normal((2,), generator=gen), gen.vars())
    assert not np.allclose(draw(), draw())


def test_default_generator_inside_jit_must_be_declared():
    draw = bridge.Jit(lambda: bridge.random.normal((2,)), bridge.VarCollection())
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Generator\)._key"):
        draw()


def test_a_generator_first_used_inside_jit_that_does_not_declare_it_is_reported():
    """Its key is made on first use; even inside a trace it is the generator's state, not
    part of the traced call, so the undeclared read is reported (not a frozen key)."""
    model, generator = bridge.nn.Linear(1, 1), bridge.random.Generator(3)
    noisy = bridge.Jit(lambda x: model(x) + jax.random.normal(generator(), (1,)),
                       model.vars())
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Generator\)._key"):
        noisy(jnp.ones((1, 1)))
    np.testing.assert_array_equal(generator.key.value, jax.random.PRNGKey(3))
