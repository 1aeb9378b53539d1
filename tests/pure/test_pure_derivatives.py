"""bridge.pure derivatives on pytrees (dict params), each against plain JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import bridge

P = {
    "w": jnp.array([[0.5, -1.0], [2.0, 0.3], [0.1, 0.2]]),
    "b": jnp.array([0.1, -0.3]),
}
X = jnp.array([[1.0, -0.5, 0.25], [0.3, 2.0, -1.0], [-1.5, 0.5, 0.75], [0.2, 0.1, -0.3]])
Y = jnp.array([[0.5, -1.0], [1.0, 0.0], [0.0, 0.25], [-0.5, 0.5]])


def close(actual, expected, rtol=1e-5, atol=1e-6):
    jax.tree_util.tree_map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                                                atol=atol),
        actual, expected)


def entry(tree, i):
    """The i-th slice along the leading axis of every leaf."""
    return jax.tree_util.tree_map(lambda g: g[i], tree)


def same_structure(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)


def predict(p, x):
    return jnp.tanh(x @ p["w"] + p["b"])


def loss(p, x, y):
    return ((predict(p, x) - y) ** 2).mean()


def loss_aux(p, x, y):
    out = predict(p, x)
    return ((out - y) ** 2).mean(), {"out": out}


# ----- grad: the four return formats ------------------------------------------------------

def test_grad_on_dict_params_matches_jax_grad():
    grads = bridge.pure.grad(loss)(P, X, Y)
    same_structure(grads, P)
    close(grads, jax.grad(loss)(P, X, Y))


def test_grad_argnums_int_selects_that_argument():
    close(bridge.pure.grad(loss, argnums=1)(P, X, Y), jax.grad(loss, argnums=1)(P, X, Y))


def test_grad_argnums_tuple_gives_a_tuple():
    grads = bridge.pure.grad(loss, argnums=(0, 1))(P, X, Y)
    assert isinstance(grads, tuple) and len(grads) == 2
    close(grads, jax.grad(loss, argnums=(0, 1))(P, X, Y))


def test_grad_return_value_gives_grads_and_value():
    grads, value = bridge.pure.grad(loss, return_value=True)(P, X, Y)
    ref_value, ref_grads = jax.value_and_grad(loss)(P, X, Y)
    close(grads, ref_grads)
    close(value, ref_value)


def test_grad_has_aux_gives_grads_and_aux():
    grads, aux = bridge.pure.grad(loss_aux, has_aux=True)(P, X, Y)
    ref_grads, ref_aux = jax.grad(loss_aux, has_aux=True)(P, X, Y)
    close(grads, ref_grads)
    same_structure(aux, ref_aux)
    close(aux, ref_aux)


def test_grad_return_value_and_has_aux_gives_grads_value_aux():
    grads, value, aux = bridge.pure.grad(loss_aux, has_aux=True, return_value=True)(P, X, Y)
    (ref_value, ref_aux), ref_grads = jax.value_and_grad(loss_aux, has_aux=True)(P, X, Y)
    close(grads, ref_grads)
    close(value, ref_value)
    close(aux, ref_aux)


def test_grad_passes_keyword_arguments_through_undifferentiated():
    def scaled(p, x, y, scale=1.0):
        return scale * loss(p, x, y)

    close(bridge.pure.grad(scaled)(P, X, Y, scale=3.0),
          jax.grad(lambda p: scaled(p, X, Y, scale=3.0))(P))


def test_grad_of_non_scalar_output_raises_type_error_with_shape():
    with pytest.raises(TypeError, match=r"\(4, 2\)"):
        bridge.pure.grad(predict)(P, X)


def test_grad_has_aux_requires_a_pair():
    with pytest.raises(TypeError, match="pair"):
        bridge.pure.grad(loss, has_aux=True)(P, X, Y)


def test_grad_is_jittable():
    close(jax.jit(bridge.pure.grad(loss, return_value=True))(P, X, Y),
          (jax.grad(loss)(P, X, Y), loss(P, X, Y)))


# ----- vector_grad ------------------------------------------------------------------------

def test_vector_grad_is_the_vjp_with_ones_on_dict_params():
    ours = bridge.pure.vector_grad(predict)(P, X)
    out, pullback = jax.vjp(predict, P, X)
    close(ours, pullback(jnp.ones_like(out))[0])
    close(ours, jax.grad(lambda p: predict(p, X).sum())(P))


def test_vector_grad_argnums_tuple_gives_a_tuple():
    gp, gx = bridge.pure.vector_grad(predict, argnums=(0, 1))(P, X)
    ref_p, ref_x = jax.grad(lambda p, x: predict(p, x).sum(), argnums=(0, 1))(P, X)
    close(gp, ref_p)
    close(gx, ref_x)


def test_vector_grad_on_pytree_outputs_sums_every_leaf():
    def tree_out(a, b):
        return {"x": a ** 2 * b, "y": (jnp.sin(a), jnp.cos(b).sum())}

    a, b = jnp.arange(1.0, 4.0), jnp.array([0.5, -0.5, 2.0])

    def total(a, b):
        return sum(leaf.sum() for leaf in jax.tree_util.tree_leaves(tree_out(a, b)))

    ga, gb = bridge.pure.vector_grad(tree_out, argnums=(0, 1))(a, b)
    close(ga, jax.grad(total, 0)(a, b))
    close(gb, jax.grad(total, 1)(a, b))


def test_vector_grad_return_value_and_has_aux():
    def f(a):
        return a ** 3, a.sum()

    a = jnp.array([1.0, -2.0, 0.5])
    grads, value, aux = bridge.pure.vector_grad(f, has_aux=True, return_value=True)(a)
    close(grads, 3 * a ** 2)
    close(value, a ** 3)
    close(aux, a.sum())


# ----- jacobian ---------------------------------------------------------------------------

def test_jacobian_reverse_forward_and_jax_jacrev_agree_on_dict_params():
    reverse = jax.jit(bridge.pure.jacobian(predict))(P, X)
    forward = jax.jit(bridge.pure.jacobian(predict, mode="forward"))(P, X)
    expected = jax.jit(jax.jacrev(predict))(P, X)
    same_structure(reverse, expected)
    close(reverse, expected)
    close(forward, expected)
    assert reverse["w"].shape == (4, 2, 3, 2)


def test_jacobian_argnums_tuple_matches_jax_jacfwd():
    ours = jax.jit(bridge.pure.jacobian(predict, argnums=(0, 1), mode="forward"))(P, X)
    close(ours, jax.jit(jax.jacfwd(predict, argnums=(0, 1)))(P, X))


def test_jacobian_return_value_and_has_aux():
    def f(p, x):
        out = predict(p, x)
        return out, out.mean()

    jac, value, aux = jax.jit(bridge.pure.jacobian(f, has_aux=True, return_value=True))(P, X)
    close(jac, jax.jit(jax.jacrev(predict))(P, X))
    close(value, predict(P, X))
    close(aux, predict(P, X).mean())


def test_jacobian_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        bridge.pure.jacobian(predict, mode="sideways")


# ----- hessian ----------------------------------------------------------------------------

def small_loss(p):
    return loss(p, X, Y)


def test_hessian_on_dict_params_matches_jax_hessian():
    ours = jax.jit(bridge.pure.hessian(small_loss))(P)
    expected = jax.jit(jax.hessian(small_loss))(P)
    same_structure(ours, expected)
    close(ours, expected, rtol=1e-4)


def test_hessian_argnums_tuple_matches_jax_hessian():
    ours = jax.jit(bridge.pure.hessian(loss, argnums=(0, 1)))(P, X, Y)
    close(ours, jax.jit(jax.hessian(loss, argnums=(0, 1)))(P, X, Y), rtol=1e-4)


def test_hessian_has_aux_and_return_value():
    h, value, aux = jax.jit(bridge.pure.hessian(loss_aux, has_aux=True, return_value=True))(
        P, X, Y)
    close(h, jax.jit(jax.hessian(loss))(P, X, Y), rtol=1e-4)
    close(value, loss(P, X, Y))
    close(aux, loss_aux(P, X, Y)[1])


def test_hessian_of_non_scalar_output_raises_type_error_with_shape():
    with pytest.raises(TypeError, match=r"\(4, 2\)"):
        bridge.pure.hessian(predict)(P, X)


# ----- hvp --------------------------------------------------------------------------------

def test_hvp_on_dict_params_equals_flat_hessian_times_vector():
    v = {"w": jnp.array([[1.0, 0.5], [-1.0, 2.0], [0.3, -0.2]]), "b": jnp.array([0.7, -1.1])}
    flat_p, unravel = ravel_pytree(P)
    flat_v, _ = ravel_pytree(v)
    hessian = jax.jit(jax.hessian(lambda q: small_loss(unravel(q))))(flat_p)
    ours = jax.jit(lambda p, t: bridge.pure.hvp(small_loss, p, t))(P, v)
    same_structure(ours, P)
    np.testing.assert_allclose(ravel_pytree(ours)[0], jnp.dot(hessian, flat_v), rtol=1e-4,
                               atol=1e-6)


# ----- straight_through -------------------------------------------------------------------

def rounded(tree):
    return jax.tree_util.tree_map(jnp.round, tree)


def test_straight_through_on_a_pytree_has_the_rounded_value():
    tree = {"a": jnp.array([1.3, 2.7, -0.6]), "b": (jnp.array(0.4),)}
    close(bridge.pure.straight_through(rounded)(tree), rounded(tree))


def test_straight_through_on_a_pytree_passes_gradients_unchanged():
    tree = {"a": jnp.array([1.3, 2.7, -0.6]), "b": (jnp.array(0.4),)}
    weights = {"a": jnp.array([2.0, -1.0, 0.5]), "b": (jnp.array(3.0),)}
    st = bridge.pure.straight_through(rounded)

    def objective(t, f):
        return sum(jnp.sum(w * o) for w, o in zip(jax.tree_util.tree_leaves(weights),
                                                   jax.tree_util.tree_leaves(f(t))))

    close(jax.grad(objective)(tree, st), weights)
    close(jax.grad(objective)(tree, rounded), jax.tree_util.tree_map(jnp.zeros_like, weights))


# ----- per_example_grad_values ------------------------------------------------------------

def one_example_loss(p, x, y):
    return ((predict(p, x) - y) ** 2).sum()


def test_per_example_grad_values_match_a_loop_of_jax_grad():
    grads, (losses,) = bridge.pure.per_example_grad_values(one_example_loss)(P, X, Y)
    ref_grad, ref_loss = jax.jit(jax.grad(one_example_loss)), jax.jit(one_example_loss)
    assert grads["w"].shape == (4, 3, 2) and losses.shape == (4,)
    for i in range(4):
        close(entry(grads, i), ref_grad(P, X[i], Y[i]))
        close(losses[i], ref_loss(P, X[i], Y[i]))


def test_per_example_grad_values_batch_axis_selects_the_data_axis():
    grads, (losses,) = bridge.pure.per_example_grad_values(
        one_example_loss, batch_axis=(None, 1, 0))(P, X.T, Y)
    expected = jax.vmap(jax.grad(one_example_loss), in_axes=(None, 0, 0))(P, X, Y)
    close(grads, expected)
    close(losses, jax.vmap(one_example_loss, in_axes=(None, 0, 0))(P, X, Y))


def test_per_example_grad_values_microbatch_gives_one_gradient_per_group():
    grads, (losses,) = bridge.pure.per_example_grad_values(loss, microbatch=2)(P, X, Y)
    assert grads["b"].shape == (2, 2) and losses.shape == (2,)
    ref = jax.jit(jax.value_and_grad(loss))
    for k, part in enumerate((slice(0, 2), slice(2, 4))):
        ref_loss, ref_grads = ref(P, X[part], Y[part])
        close(entry(grads, k), ref_grads)
        close(losses[k], ref_loss)


def test_per_example_grad_values_microbatch_with_batch_axis_1():
    grads, _ = bridge.pure.per_example_grad_values(
        lambda p, xt, y: loss(p, xt.T, y), batch_axis=(None, 1, 0), microbatch=2)(P, X.T, Y)
    ref = jax.jit(jax.grad(loss))
    for k, part in enumerate((slice(0, 2), slice(2, 4))):
        close(entry(grads, k), ref(P, X[part], Y[part]))


def test_per_example_grad_values_argnums_selects_the_differentiated_argument():
    grads, _ = bridge.pure.per_example_grad_values(one_example_loss, argnums=1)(P, X, Y)
    close(grads, jax.vmap(jax.grad(one_example_loss, argnums=1), in_axes=(None, 0, 0))(P, X, Y))


# ----- nested (MAML) losses ---------------------------------------------------------------

MU = 0.1
XS, YS = X[:2], Y[:2]  # support
XQ, YQ = X[2:], Y[2:]  # query


def hand_written_maml(p, xq, yq, xs, ys):
    g = jax.grad(loss)(p, xs, ys)
    adapted = jax.tree_util.tree_map(lambda a, d: a - MU * d, p, g)
    return loss(adapted, xq, yq)


def hand_written_first_order_maml(p, xq, yq, xs, ys):
    g = jax.lax.stop_gradient(jax.grad(loss)(p, xs, ys))
    adapted = jax.tree_util.tree_map(lambda a, d: a - MU * d, p, g)
    return loss(adapted, xq, yq)


def test_nested_loss_value_matches_hand_written():
    ours = jax.jit(bridge.pure.nested_loss(loss, MU))(P, XQ, YQ, XS, YS)
    close(ours, jax.jit(hand_written_maml)(P, XQ, YQ, XS, YS))


def test_nested_loss_second_order_gradient_matches_hand_written():
    ours = jax.jit(jax.grad(bridge.pure.nested_loss(loss, MU)))(P, XQ, YQ, XS, YS)
    close(ours, jax.jit(jax.grad(hand_written_maml))(P, XQ, YQ, XS, YS))


def test_nested_loss_first_order_gradient_matches_hand_written():
    ours = jax.jit(jax.grad(bridge.pure.nested_loss(loss, MU, first_order=True)))(
        P, XQ, YQ, XS, YS)
    close(ours, jax.jit(jax.grad(hand_written_first_order_maml))(P, XQ, YQ, XS, YS))
    second = jax.jit(jax.grad(hand_written_maml))(P, XQ, YQ, XS, YS)
    assert not np.allclose(ours["w"], second["w"], rtol=1e-4)


def test_nested_loss_uses_the_first_entry_of_a_tuple_loss():
    def tuple_loss(p, x, y):
        return loss(p, x, y), jnp.zeros(3)

    ours = jax.jit(jax.grad(bridge.pure.nested_loss(tuple_loss, MU)))(P, XQ, YQ, XS, YS)
    close(ours, jax.jit(jax.grad(hand_written_maml))(P, XQ, YQ, XS, YS))


def test_pairwise_nested_loss_matches_vmap_mean_of_hand_written():
    key = jax.random.PRNGKey(0)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    X1, Y1 = jax.random.normal(k1, (5, 3, 3)), jax.random.normal(k2, (5, 3, 2))
    X2, Y2 = jax.random.normal(k3, (5, 2, 3)), jax.random.normal(k4, (5, 2, 2))

    def reference(p, X1, Y1, X2, Y2):
        return jax.vmap(hand_written_maml, in_axes=(None, 0, 0, 0, 0))(p, X1, Y1, X2, Y2).mean()

    ours = bridge.pure.pairwise_nested_loss(loss, MU)
    close(jax.jit(jax.value_and_grad(ours))(P, X1, Y1, X2, Y2),
          jax.jit(jax.value_and_grad(reference))(P, X1, Y1, X2, Y2))


def test_pairwise_nested_loss_first_order_matches_vmap_mean_of_hand_written():
    X1, Y1, X2, Y2 = (jnp.stack([a, a[::-1]]) for a in (XQ, YQ, XS, YS))

    def reference(p):
        return jax.vmap(hand_written_first_order_maml, in_axes=(None, 0, 0, 0, 0))(
            p, X1, Y1, X2, Y2).mean()

    ours = bridge.pure.pairwise_nested_loss(loss, MU, first_order=True)
    close(jax.jit(jax.grad(ours))(P, X1, Y1, X2, Y2), jax.jit(jax.grad(reference))(P))
