"""Seed 001 (JAX's "advanced automatic differentiation" page): every behaviour it shows,
reproduced with ``bridge.pure`` and the object facades and checked against plain JAX or the
numbers printed on the page."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

TOL = dict(rtol=1e-6, atol=1e-6)


def cubic(x):
    return x ** 3 + 2 * x ** 2 - 3 * x + 1


def dot_self(x):
    return jnp.dot(x, x)


# ----- higher-order derivatives -----------------------------------------------------------

def test_nested_pure_grad_of_cubic_at_one_gives_4_10_6_0():
    derivative, found = cubic, []
    for _ in range(4):
        derivative = bridge.pure.grad(derivative)
        found.append(float(jax.jit(derivative)(1.0)))
    assert found == [4.0, 10.0, 6.0, 0.0]


def test_nested_pure_grad_of_cubic_matches_nested_jax_grad():
    ours, ref = cubic, cubic
    for _ in range(4):
        ours, ref = bridge.pure.grad(ours), jax.grad(ref)
        xs = jnp.array([-1.5, 0.0, 1.0, 2.5])
        np.testing.assert_allclose(jax.jit(jax.vmap(ours))(xs), jax.jit(jax.vmap(ref))(xs), **TOL)


def test_nested_facade_grad_of_cubic_at_one_gives_4_10_6_0():
    derivative, found = cubic, []
    for _ in range(4):
        derivative = bridge.grad(derivative)
        found.append(float(derivative(1.0)))  # eager: the facade outside any jit
    assert found == [4.0, 10.0, 6.0, 0.0]


def test_pure_hessian_of_dot_product_is_two_identity():
    h = bridge.pure.hessian(dot_self)(jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(h, 2 * np.eye(3))


def test_facade_hessian_of_dot_product_is_two_identity():
    h = bridge.hessian(dot_self)(jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(h, 2 * np.eye(3))


def test_hessian_is_forward_jacobian_of_gradient():
    # The page defines hessian(f) = jacfwd(grad(f)); check ours against that definition.
    def f(x):
        return jnp.sin(x[0]) * x[1] ** 2 + jnp.exp(x[2] * x[0])

    x = jnp.array([0.3, -1.2, 0.7])
    expected = jax.jacfwd(jax.grad(f))(x)
    np.testing.assert_allclose(bridge.pure.hessian(f)(x), expected, **TOL)
    np.testing.assert_allclose(
        bridge.pure.jacobian(bridge.pure.grad(f), mode="forward")(x), expected, **TOL)


def test_jacfwd_and_jacrev_give_the_same_answer():
    def f(x):
        return jnp.array([x[0] * x[1], jnp.sin(x[2]), x[0] ** 2 - x[2]])

    x = jnp.array([1.5, -0.5, 0.25])
    forward = bridge.pure.jacobian(f, mode="forward")(x)
    reverse = bridge.pure.jacobian(f, mode="reverse")(x)
    np.testing.assert_allclose(forward, reverse, **TOL)
    np.testing.assert_allclose(reverse, jax.jacrev(f)(x), **TOL)
    np.testing.assert_allclose(forward, jax.jacfwd(f)(x), **TOL)


def test_jacobian_rows_and_columns_are_vjps_and_jvps():
    def f(x):
        return jnp.array([x[0] * x[1], jnp.sin(x[2]) * x[0], x[1] ** 3])

    x = jnp.array([0.4, 1.1, -0.8])
    v = jnp.array([1.0, -2.0, 0.5])
    jac = bridge.pure.jacobian(f)(x)
    _, tangent = jax.jvp(f, (x,), (v,))
    _, pullback = jax.vjp(f, x)
    np.testing.assert_allclose(jac @ v, tangent, **TOL)
    np.testing.assert_allclose(v @ jac, pullback(v)[0], **TOL)


def _hvp_test_function(x):
    return jnp.sum(jnp.sin(x) * x ** 2) + x[0] * x[1] * x[2] + jnp.dot(x, x) ** 2


def test_hvp_equals_hessian_times_vector():
    x = jnp.array([0.3, -1.0, 2.0, 0.5])
    v = jnp.array([1.0, 0.5, -2.0, 3.0])
    expected = jax.jit(lambda a, b: jnp.dot(jax.hessian(_hvp_test_function)(a), b))(x, v)
    ours = jax.jit(lambda a, b: bridge.pure.hvp(_hvp_test_function, a, b))(x, v)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def _shapes_in(jaxpr):
    """Every intermediate shape in a (closed) jaxpr, sub-jaxprs included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(var.aval.shape)
        for param in eqn.params.values():
            subs = param if isinstance(param, (tuple, list)) else (param,)
            for sub in subs:
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds a Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _shapes_in(inner)


def test_hvp_does_not_materialise_the_hessian():
    n = 257
    x, v = jnp.linspace(-1.0, 1.0, n), jnp.ones(n)
    closed = jax.make_jaxpr(lambda a, b: bridge.pure.hvp(_hvp_test_function, a, b))(x, v)
    shapes = set(_shapes_in(closed.jaxpr))
    assert (n,) in shapes
    assert (n, n) not in shapes


# ----- higher-order optimisation (MAML) ---------------------------------------------------

LR = 0.1
PARAMS = jnp.array([0.5, -0.3, 0.8])
DATA_X = jnp.array([[1.0, 2.0, -1.0], [0.5, -0.5, 2.0], [-1.0, 1.5, 0.3], [2.0, 0.1, -0.7]])
DATA_Y = jnp.array([1.0, -0.5, 0.25, 2.0])


def loss_fn(params, x, y):
    return ((jnp.tanh(x @ params) - y) ** 2).mean()


def hand_written_meta_loss(params, x, y):
    """The loss after one SGD step on the same data (the page's example)."""
    grads = jax.grad(loss_fn)(params, x, y)
    return loss_fn(params - LR * grads, x, y)


def test_maml_meta_gradient_of_nested_loss_matches_hand_written():
    meta = bridge.pure.nested_loss(loss_fn, mu=LR)
    ours = jax.grad(meta)(PARAMS, DATA_X, DATA_Y, DATA_X, DATA_Y)
    expected = jax.grad(hand_written_meta_loss)(PARAMS, DATA_X, DATA_Y)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_maml_meta_gradient_through_bridge_pure_grad_matches_jax_grad():
    def meta_with_bridge(params, x, y):
        grads = bridge.pure.grad(loss_fn)(params, x, y)
        return loss_fn(params - LR * grads, x, y)

    ours = bridge.pure.grad(meta_with_bridge)(PARAMS, DATA_X, DATA_Y)
    expected = jax.grad(hand_written_meta_loss)(PARAMS, DATA_X, DATA_Y)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_maml_meta_gradient_includes_second_order_terms():
    # Differentiating through the update differs from treating the inner gradient as fixed.
    second = jax.grad(bridge.pure.nested_loss(loss_fn, mu=LR))(
        PARAMS, DATA_X, DATA_Y, DATA_X, DATA_Y)
    first = jax.grad(bridge.pure.nested_loss(loss_fn, mu=LR, first_order=True))(
        PARAMS, DATA_X, DATA_Y, DATA_X, DATA_Y)
    assert not np.allclose(second, first, rtol=1e-4)


# ----- stopping gradients: TD(0) ----------------------------------------------------------

THETA = jnp.array([0.1, -0.1, 0.0])
S_TM1 = jnp.array([1.0, 2.0, -1.0])
R_T = jnp.array(1.0)
S_T = jnp.array([2.0, 1.0, 0.0])


def value_fn(theta, state):
    return jnp.dot(theta, state)


def td_loss_naive(theta, s_tm1, r_t, s_t):
    v_tm1 = value_fn(theta, s_tm1)
    target = r_t + value_fn(theta, s_t)
    return (target - v_tm1) ** 2


def td_loss(theta, s_tm1, r_t, s_t):
    v_tm1 = value_fn(theta, s_tm1)
    target = r_t + value_fn(theta, s_t)
    return (jax.lax.stop_gradient(target) - v_tm1) ** 2


def test_td_loss_gradient_without_stop_gradient_is_2_4_minus_2_4_2_4():
    delta = bridge.pure.grad(td_loss_naive)(THETA, S_TM1, R_T, S_T)
    np.testing.assert_allclose(delta, [2.4, -2.4, 2.4], **TOL)


def test_td_loss_gradient_with_stop_gradient_is_minus_2_4_minus_4_8_2_4():
    delta = bridge.pure.grad(td_loss)(THETA, S_TM1, R_T, S_T)
    np.testing.assert_allclose(delta, [-2.4, -4.8, 2.4], **TOL)


def test_td0_update_is_minus_half_the_stopped_pseudo_loss_gradient():
    # TD(0): delta = (r_t + v(s_t) - v(s_tm1)) * grad_theta v(s_tm1).
    td_error = R_T + value_fn(THETA, S_T) - value_fn(THETA, S_TM1)
    update = td_error * bridge.pure.grad(value_fn)(THETA, S_TM1)
    np.testing.assert_allclose(update, [1.2, 2.4, -1.2], **TOL)
    np.testing.assert_allclose(update, -0.5 * bridge.pure.grad(td_loss)(THETA, S_TM1, R_T, S_T),
                               **TOL)
    naive = bridge.pure.grad(td_loss_naive)(THETA, S_TM1, R_T, S_T)
    assert not np.allclose(update, -0.5 * naive)


# ----- straight-through estimator ---------------------------------------------------------

def page_straight_through_f(x):
    zero = x - jax.lax.stop_gradient(x)
    return zero + jax.lax.stop_gradient(jnp.round(x))


def test_rounding_value_is_3_and_plain_gradient_is_0():
    assert float(jnp.round(3.2)) == 3.0
    assert float(bridge.pure.grad(jnp.round)(3.2)) == 0.0


def test_straight_through_value_is_3_and_gradient_is_1():
    st = bridge.pure.straight_through(jnp.round)
    assert float(st(3.2)) == 3.0
    assert float(bridge.pure.grad(st)(3.2)) == 1.0


def test_straight_through_matches_the_hand_written_estimator():
    st = bridge.pure.straight_through(jnp.round)
    for x in (-2.7, -0.2, 0.5, 3.2, 7.9):
        assert float(st(x)) == float(page_straight_through_f(x))
        assert float(jax.grad(st)(x)) == float(jax.grad(page_straight_through_f)(x)) == 1.0


# ----- per-example gradients --------------------------------------------------------------

BATCH_S_TM1 = jnp.stack([S_TM1, S_TM1])
BATCH_R_T = jnp.stack([R_T, R_T])
BATCH_S_T = jnp.stack([S_T, S_T])


def test_per_example_gradients_via_jit_vmap_grad_are_the_page_numbers():
    perex_grads = jax.jit(jax.vmap(bridge.pure.grad(td_loss), in_axes=(None, 0, 0, 0)))
    out = perex_grads(THETA, BATCH_S_TM1, BATCH_R_T, BATCH_S_T)
    np.testing.assert_allclose(out, [[-2.4, -4.8, 2.4], [-2.4, -4.8, 2.4]], **TOL)


def test_per_example_grad_values_equals_jit_vmap_grad():
    grads, values = bridge.pure.per_example_grad_values(td_loss)(
        THETA, BATCH_S_TM1, BATCH_R_T, BATCH_S_T)
    expected = jax.jit(jax.vmap(jax.grad(td_loss), in_axes=(None, 0, 0, 0)))(
        THETA, BATCH_S_TM1, BATCH_R_T, BATCH_S_T)
    np.testing.assert_allclose(grads, expected, **TOL)
    assert len(values) == 1
    np.testing.assert_allclose(values[0], [1.44, 1.44], rtol=1e-5)


def test_per_example_grad_values_with_batched_theta():
    # The page's intermediate step: vmap over a stacked batch of thetas too.
    batch_theta = jnp.stack([THETA, THETA])
    grads, _ = bridge.pure.per_example_grad_values(td_loss, batch_axis=(0, 0, 0, 0))(
        batch_theta, BATCH_S_TM1, BATCH_R_T, BATCH_S_T)
    expected = jax.vmap(jax.grad(td_loss))(batch_theta, BATCH_S_TM1, BATCH_R_T, BATCH_S_T)
    np.testing.assert_allclose(grads, expected, **TOL)
    np.testing.assert_allclose(grads, [[-2.4, -4.8, 2.4], [-2.4, -4.8, 2.4]], **TOL)


def test_per_example_grad_values_differ_per_example():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    s_tm1 = jax.random.normal(keys[0], (6, 3))
    r_t = jax.random.normal(keys[1], (6,))
    s_t = jax.random.normal(keys[2], (6, 3))
    grads, (losses,) = jax.jit(bridge.pure.per_example_grad_values(td_loss))(THETA, s_tm1, r_t,
                                                                              s_t)
    ref_grad, ref_loss = jax.jit(jax.grad(td_loss)), jax.jit(td_loss)
    for i in range(6):
        np.testing.assert_allclose(grads[i], ref_grad(THETA, s_tm1[i], r_t[i], s_t[i]),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(losses[i], ref_loss(THETA, s_tm1[i], r_t[i], s_t[i]),
                                   rtol=1e-5)


def test_per_example_grad_values_microbatch_equals_per_group_gradients():
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    s_tm1 = jax.random.normal(keys[0], (8, 3))
    r_t = jax.random.normal(keys[1], (8,))
    s_t = jax.random.normal(keys[2], (8, 3))

    def group_loss(theta, s_tm1, r_t, s_t):
        return jax.vmap(td_loss, in_axes=(None, 0, 0, 0))(theta, s_tm1, r_t, s_t).mean()

    grads, (losses,) = bridge.pure.per_example_grad_values(group_loss, microbatch=2)(
        THETA, s_tm1, r_t, s_t)
    assert grads.shape == (4, 3) and losses.shape == (4,)
    ref_grad, ref_loss = jax.jit(jax.grad(group_loss)), jax.jit(group_loss)
    for k in range(4):
        part = slice(2 * k, 2 * k + 2)
        np.testing.assert_allclose(
            grads[k], ref_grad(THETA, s_tm1[part], r_t[part], s_t[part]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            losses[k], ref_loss(THETA, s_tm1[part], r_t[part], s_t[part]), rtol=1e-5)


def test_per_example_microbatch_requires_a_divisible_batch():
    with pytest.raises(ValueError, match="multiple"):
        bridge.pure.per_example_grad_values(td_loss, microbatch=4)(
            THETA, jnp.ones((6, 3)), jnp.ones(6), jnp.ones((6, 3)))
