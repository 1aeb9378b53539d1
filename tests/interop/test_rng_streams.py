"""Rng streams of the wrappers are declared or read from the model, never guessed.

``FlaxModule`` passes keys for the streams given in ``rng_streams``, or, without it, for
the streams named by the ``rng_collection`` of the Linen modules its first call runs.
``HaikuModule`` passes a key when ``apply`` uses its ``rng`` (found from its jaxpr).
The reference is always the library's own ``apply`` with the keys the wrapper documents.
"""

from pathlib import Path

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import InvalidRngError

import bridge
from bridge.flax import FlaxModule, MissingRngStreamError
from bridge.haiku import HaikuModule

TOL = 1e-6
X = jnp.linspace(-1.0, 1.0, 4 * 6).reshape(4, 6)


class DropNet(nn.Module):
    """Dense, dropout (stream "dropout" via nn.Dropout), Dense."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(16)(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(3)(x)


class Noise(nn.Module):
    """Adds noise from ``self.make_rng("noise")``; no ``rng_collection`` attribute."""

    @nn.compact
    def __call__(self, x):
        return x + jax.random.normal(self.make_rng("noise"), x.shape)


class NoisyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Noise()(nn.Dense(3)(x))


class DeclaredNoise(nn.Module):
    """Like ``Noise``, but names its stream in ``rng_collection`` as nn.Dropout does."""

    rng_collection: str = "noise"

    @nn.compact
    def __call__(self, x):
        return x + jax.random.normal(self.make_rng(self.rng_collection), x.shape)


class DropAndNoiseNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dropout(0.5, deterministic=False)(nn.Dense(8)(x))
        return DeclaredNoise()(x)


def init(model):
    return model.init(jax.random.PRNGKey(0), X)


def keys_for(seed, n):
    """The documented split: ``next rng, key of stream 0, key of stream 1, ...``."""
    keys = jax.random.split(jax.random.PRNGKey(seed), n + 1)
    return keys[0], list(keys[1:])


def unchanged(m, before):
    return all(np.array_equal(a, b) for a, b in zip(before, m.vars().tensors()))


# ----- FlaxModule: streams found from the model --------------------------------------------
def test_dropout_stream_is_found_without_rng_streams():
    variables = init(DropNet())
    m = FlaxModule(DropNet(), variables, seed=5)
    out = m(X)
    rng, (key,) = keys_for(5, 1)
    ref = DropNet().apply(variables, X, rngs={"dropout": key})
    np.testing.assert_allclose(out, ref, atol=TOL)
    np.testing.assert_array_equal(m.rng.value, rng)


def test_dropout_stream_is_found_inside_jit():
    variables = init(DropNet())
    m = FlaxModule(DropNet(), variables, seed=5)
    jitted = bridge.Jit(lambda x: m(x), m.vars())
    out, out2 = jitted(X), jitted(X)
    rng, (key,) = keys_for(5, 1)
    rng2, key2 = jax.random.split(rng)
    np.testing.assert_allclose(out, DropNet().apply(variables, X, rngs={"dropout": key}),
                               atol=TOL)
    np.testing.assert_allclose(out2, DropNet().apply(variables, X, rngs={"dropout": key2}),
                               atol=TOL)
    np.testing.assert_array_equal(m.rng.value, rng2)


def test_streams_found_on_an_eval_call_are_drawn_from_the_next_call_on():
    """A first call with dropout off needs no key and draws none; the stream it found
    (nn.Dropout was called) gets a key on every later call."""
    variables = init(DropNet())
    m = FlaxModule(DropNet(), variables, seed=2)
    rng = m.rng.value
    np.testing.assert_allclose(m(X, train=False), DropNet().apply(variables, X, train=False),
                               atol=TOL)
    assert m.rng.value is rng
    out = m(X, train=True)
    _, (key,) = keys_for(2, 1)
    np.testing.assert_allclose(out, DropNet().apply(variables, X, rngs={"dropout": key}),
                               atol=TOL)


def test_a_custom_module_with_rng_collection_is_found():
    variables = init(DropAndNoiseNet())
    m = FlaxModule(DropAndNoiseNet(), variables, seed=4)
    out = m(X)
    _, (dropout_key, noise_key) = keys_for(4, 2)  # streams sorted: dropout, noise
    ref = DropAndNoiseNet().apply(variables, X, rngs={"dropout": dropout_key,
                                                      "noise": noise_key})
    np.testing.assert_allclose(out, ref, atol=TOL)


def test_vectorize_gives_each_example_its_own_found_stream_key():
    m = FlaxModule(DropNet(), init(DropNet()))
    per_example = bridge.Jit(bridge.Vectorize(lambda x: m(x), m.vars(), batch_axis=(0,)))
    out = per_example(jnp.ones((6, 6)))
    assert len({tuple(np.asarray(row).round(5)) for row in out}) == 6


# ----- FlaxModule: declared streams --------------------------------------------------------
def test_declared_rng_streams_get_keys_on_every_call_in_sorted_order():
    variables = init(DropNet())
    m = FlaxModule(DropNet(), variables, seed=1, rng_streams=("unused", "dropout"))
    rng = m.rng.value
    m(X, train=False)  # declared: drawn even when the call does not use them
    assert not np.array_equal(m.rng.value, rng)
    out = m(X)
    first, _ = keys_for(1, 2)
    keys = jax.random.split(first, 3)  # next rng, "dropout", "unused"
    ref = DropNet().apply(variables, X, rngs={"dropout": keys[1], "unused": keys[2]})
    np.testing.assert_allclose(out, ref, atol=TOL)
    np.testing.assert_array_equal(m.rng.value, keys[0])


def test_declared_noise_stream_matches_native_apply():
    variables = init(NoisyNet())
    m = FlaxModule(NoisyNet(), variables, seed=3, rng_streams=("noise",))
    _, (key,) = keys_for(3, 1)
    np.testing.assert_allclose(m(X), NoisyNet().apply(variables, X, rngs={"noise": key}),
                               atol=TOL)


def test_rng_streams_must_be_a_sequence_of_names_not_a_str():
    with pytest.raises(TypeError, match="rng_streams"):
        FlaxModule(DropNet(), init(DropNet()), rng_streams="dropout")


# ----- FlaxModule: a stream that is neither declared nor found -----------------------------
def test_an_undeclared_make_rng_stream_raises_missing_rng_stream_error_naming_the_argument():
    m = FlaxModule(NoisyNet(), init(NoisyNet()))
    with pytest.raises(MissingRngStreamError) as info:
        m(X)
    assert "rng_streams=(" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_rng_stream_error_is_raised_from_flaxs_own_error():
    m = FlaxModule(NoisyNet(), init(NoisyNet()))
    with pytest.raises(MissingRngStreamError) as info:
        m(X)
    assert isinstance(info.value.__cause__, InvalidRngError)


def test_a_missing_stream_changes_nothing():
    m = FlaxModule(NoisyNet(), init(NoisyNet()))
    before = m.vars().tensors()
    with pytest.raises(MissingRngStreamError):
        m(X)
    assert unchanged(m, before)


def test_a_stream_missing_from_declared_rng_streams_raises_missing_rng_stream_error():
    m = FlaxModule(NoisyNet(), init(NoisyNet()), rng_streams=("dropout",))
    before = m.vars().tensors()
    with pytest.raises(MissingRngStreamError) as info:
        m(X)
    assert info.value.streams == ("dropout",)
    assert unchanged(m, before)


def test_explicit_rngs_bypass_the_streams_and_raise_flaxs_error():
    m = FlaxModule(NoisyNet(), init(NoisyNet()))
    with pytest.raises(InvalidRngError):
        m(X, rngs={"dropout": jax.random.PRNGKey(0)})


# ----- HaikuModule -------------------------------------------------------------------------
def _haiku_dropout(x):
    return hk.dropout(hk.next_rng_key(), 0.5, hk.Linear(8)(x))


def test_haiku_dropout_works_with_the_default_needs_rng_and_the_documented_split():
    f = hk.transform(_haiku_dropout)
    params = f.init(jax.random.PRNGKey(0), X)
    m = HaikuModule(f, params, seed=6)
    out, out2 = m(X), m(X)
    rng, key = jax.random.split(jax.random.PRNGKey(6))
    rng2, key2 = jax.random.split(rng)
    np.testing.assert_allclose(out, f.apply(params, key, X), atol=TOL)
    np.testing.assert_allclose(out2, f.apply(params, key2, X), atol=TOL)
    np.testing.assert_array_equal(m.rng.value, rng2)


def test_haiku_dropout_inside_jit_matches_native_apply():
    f = hk.transform(_haiku_dropout)
    params = f.init(jax.random.PRNGKey(0), X)
    m = HaikuModule(f, params, seed=6)
    out = bridge.Jit(lambda x: m(x), m.vars())(X)
    _, key = jax.random.split(jax.random.PRNGKey(6))
    np.testing.assert_allclose(out, f.apply(params, key, X), atol=TOL)


# ----- no error message is read ------------------------------------------------------------
def test_no_wrapper_reads_an_error_message_or_imports_private_haiku():
    root = Path(bridge.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle in ("str(e)", "_MISSING_STREAM", "haiku._src"):
            assert needle not in text, f"{path.relative_to(root)} holds {needle!r}"
