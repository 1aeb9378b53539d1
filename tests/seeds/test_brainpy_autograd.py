"""Seed 002 (BrainPy's "autograd for class variables"): every example and return format,
with bridge's BrainPy-style ``grad``, ``vector_grad``, ``jacobian``, ``jacrev``, ``jacfwd``
and ``hessian``.

Porting notes: BrainPy's ``bp.Base`` is ``bridge.Module``; BrainPy's plain array attributes
(``self.x = bm.ones(5)``) become ``bridge.StateVar``s, ``bm.TrainVar`` is ``bridge.TrainVar``;
``bm.random.random`` becomes ``jax.random.uniform`` with a fixed key, so where the page
prints random digits we compare against the formula in plain JAX instead.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

TOL = dict(rtol=1e-6, atol=1e-6)
ONES10 = jnp.ones(10)


def close(actual, expected, **kw):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **{**TOL, **kw})


# ----- argnums and grad_vars: the Linear readout ------------------------------------------

class Linear(bridge.Module):
    def __init__(self, seed=0):
        self.w = bridge.TrainVar(jax.random.uniform(jax.random.PRNGKey(seed), (1, 10)))
        self.b = bridge.TrainVar(jnp.zeros(1))

    def update(self, x):
        r = jnp.dot(self.w.value, x) + self.b.value
        return r.sum()


def linear_ref(w, b, x):
    return (jnp.dot(w, x) + b).sum()


def test_linear_grad_with_argnums_0_is_the_input_gradient():
    l = Linear()
    g = bridge.grad(l.update, argnums=0)(ONES10)
    close(g, jax.grad(linear_ref, argnums=2)(l.w.value, l.b.value, ONES10))
    close(g, l.w.value[0])


def test_linear_grad_with_grad_vars_tuple_gives_a_tuple_of_variable_gradients():
    l = Linear()
    grads = bridge.grad(l.update, grad_vars=(l.w, l.b))(ONES10)
    assert isinstance(grads, tuple) and len(grads) == 2
    close(grads[0], jnp.ones((1, 10)))
    close(grads[1], jnp.ones(1))


def test_linear_grad_with_grad_vars_and_argnums_gives_var_grads_then_arg_grads():
    l = Linear()
    var_grads, arg_grads = bridge.grad(l.update, grad_vars=(l.w, l.b), argnums=0)(ONES10)
    ref_w, ref_b, ref_x = jax.grad(linear_ref, argnums=(0, 1, 2))(l.w.value, l.b.value, ONES10)
    assert isinstance(var_grads, tuple) and len(var_grads) == 2
    close(var_grads[0], ref_w)
    close(var_grads[1], ref_b)
    close(arg_grads, ref_x)


def test_linear_grad_return_value_gives_gradient_and_value():
    l = Linear()
    gradient, value = bridge.grad(l.update, argnums=0, return_value=True)(ONES10)
    close(gradient, l.w.value[0])
    close(value, l.w.value.sum() + l.b.value[0])
    assert jnp.shape(value) == ()


class LinearAux(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jax.random.uniform(jax.random.PRNGKey(1), (1, 10)))
        self.b = bridge.TrainVar(jnp.zeros(1))

    def update(self, x):
        dot = jnp.dot(self.w.value, x)
        r = (dot + self.b.value).sum()
        return r, (r, dot)


def test_linear_aux_grad_has_aux_gives_gradient_and_aux_tuple():
    l2 = LinearAux()
    gradient, aux = bridge.grad(l2.update, argnums=0, has_aux=True)(ONES10)
    close(gradient, l2.w.value[0])
    r, dot = aux
    close(r, l2.w.value.sum())
    assert jnp.shape(r) == () and jnp.shape(dot) == (1,)
    close(dot, jnp.dot(l2.w.value, ONES10))


def test_module_method_variables_are_found_automatically():
    l = Linear()
    g = bridge.grad(l.update, argnums=0)
    assert {id(v) for v in g.vars().values()} == {id(l.w), id(l.b)}


def test_linear_gradient_follows_the_current_variable_values():
    l = Linear()
    g = bridge.grad(l.update, argnums=0)
    first = np.asarray(g(ONES10))
    l.w.assign(l.w.value * 3)  # a TrainVar is overwritten with assign (Objax semantics)
    close(g(ONES10), 3 * first)


def test_transformed_method_inside_jit_gives_the_same_numbers():
    l = Linear()
    g = bridge.grad(l.update, grad_vars=(l.w, l.b), argnums=0, return_value=True)
    eager = g(ONES10)
    jitted = bridge.Jit(g, l.vars())(ONES10)
    jax.tree_util.tree_map(close, jitted, eager)
    jax.tree_util.tree_map(close, bridge.Jit(g)(ONES10), eager)


# ----- pure functions ---------------------------------------------------------------------

def two_a_plus_b(a, b):
    return a * 2 + b


def test_pure_function_gradient_is_taken_with_respect_to_the_first_argument():
    assert float(bridge.grad(two_a_plus_b)(2.0, 1.0)) == 2.0


def test_pure_function_argnums_tuple_gives_a_tuple():
    grads = bridge.grad(two_a_plus_b, argnums=(0, 1))(2.0, 1.0)
    assert isinstance(grads, tuple)
    assert tuple(float(g) for g in grads) == (2.0, 1.0)


# ----- class objects ----------------------------------------------------------------------

class F(bridge.Module):
    def __init__(self):
        self.a = bridge.TrainVar(jnp.ones(1))
        self.b = bridge.TrainVar(jnp.ones(1))

    def __call__(self, c):
        ab = self.a * self.b
        ab2 = ab * 2
        vv = ab2 + c
        return vv.mean()


def test_class_grad_vars_collection_gives_a_dict_keyed_by_variable_names():
    f = F()
    grads = bridge.grad(f, grad_vars=f.vars())(10.0)
    assert isinstance(grads, dict)
    assert set(grads) == {"(F).a", "(F).b"}
    close(grads["(F).a"], [2.0])
    close(grads["(F).b"], [2.0])


def test_class_grad_vars_train_subset_gives_the_same_dict():
    # BrainPy's ``f.train_vars()`` is ``f.vars().subset(bridge.TrainVar)`` here.
    f = F()
    grads = bridge.grad(f, grad_vars=f.vars().subset(bridge.TrainVar))(10.0)
    assert set(grads) == {"(F).a", "(F).b"}
    close(grads["(F).a"], [2.0])


def test_class_grad_vars_list_gives_a_tuple():
    f = F()
    grads = bridge.grad(f, grad_vars=[f.a, f.b])(10.0)
    assert isinstance(grads, tuple) and len(grads) == 2
    close(grads[0], [2.0])
    close(grads[1], [2.0])


class F2(bridge.Module):
    def __init__(self):
        self.a = bridge.TrainVar(jnp.ones(1))
        self.b = bridge.TrainVar(jnp.ones(1))

    def __call__(self, c):  # the seed's code, as written
        ab = self.a * self.b
        ab = ab * 2
        self.a.value = ab
        return (ab + c).mean()


def test_dyn_vars_gradient_and_assigned_variable_is_written_back():
    f2 = F2()
    grad = bridge.grad(f2, dyn_vars=[f2.a], grad_vars=f2.b)(10.0)
    close(grad, [2.0])
    close(f2.a.value, [2.0])
    assert not isinstance(f2.a.value, jax.core.Tracer)
    close(f2.b.value, [1.0])


def test_dyn_vars_trainvar_takes_direct_assignment_under_jit():
    f2 = F2()
    g = bridge.Jit(bridge.grad(f2, dyn_vars=[f2.a], grad_vars=f2.b))
    close(g(10.0), [2.0])
    close(f2.a.value, [2.0])


def test_trainvar_not_in_dyn_vars_still_refuses_direct_assignment():
    f2 = F2()
    with pytest.raises(ValueError, match="Direct assignment to a TrainVar"):
        bridge.grad(f2, grad_vars=f2.b)(10.0)
    with pytest.raises(ValueError, match="Direct assignment to a TrainVar"):
        f2(10.0)
    close(f2.a.value, [1.0])


def test_dyn_vars_assignment_accumulates_over_calls():
    f2 = F2()
    g = bridge.grad(f2, dyn_vars=[f2.a], grad_vars=f2.b)
    close(g(10.0), [2.0])
    close(g(10.0), [4.0])  # d/db (2 a b) with a = 2 after the first call
    close(f2.a.value, [4.0])


class F3(bridge.Module):
    def __init__(self):
        self.a = bridge.TrainVar(jnp.ones(1))
        self.b = bridge.TrainVar(jnp.ones(1))

    def __call__(self, c, d):
        ab = self.a * self.b
        ab = ab * 2
        return (ab + c * d).mean()


def test_grad_vars_with_argnums_0_gives_var_grads_and_one_arg_grad():
    f3 = F3()
    grads_of_gv, grad_of_args = bridge.grad(f3, grad_vars=[f3.a, f3.b], argnums=0)(10.0, 3.0)
    assert isinstance(grads_of_gv, tuple) and len(grads_of_gv) == 2
    close(grads_of_gv[0], [2.0])
    close(grads_of_gv[1], [2.0])
    assert float(grad_of_args) == 3.0


def test_grad_vars_with_argnums_tuple_gives_a_tuple_of_arg_grads():
    f3 = F3()
    grads_of_gv, grad_of_args = bridge.grad(f3, grad_vars=[f3.a, f3.b], argnums=(0, 1))(10.0,
                                                                                        3.0)
    close(grads_of_gv[0], [2.0])
    close(grads_of_gv[1], [2.0])
    assert isinstance(grad_of_args, tuple)
    assert tuple(float(g) for g in grad_of_args) == (3.0, 10.0)


def test_class_return_value_gives_gradient_and_loss():
    f = F()
    grad, loss = bridge.grad(f, grad_vars=f.a, return_value=True)(10.0)
    close(grad, [2.0])
    assert float(loss) == 12.0


class F4(bridge.Module):
    def __init__(self):
        self.a = bridge.TrainVar(jnp.ones(1))
        self.b = bridge.TrainVar(jnp.ones(1))

    def __call__(self, c):
        ab = self.a * self.b
        ab2 = ab * 2
        loss = (ab + c).mean()
        return loss, (ab, ab2)


def test_class_has_aux_gives_gradient_and_intermediate_values():
    f4 = F4()
    grad, aux_data = bridge.grad(f4, grad_vars=f4.a, has_aux=True)(10.0)
    close(grad, [1.0])
    ab, ab2 = aux_data
    close(ab, [1.0])
    close(ab2, [2.0])


def test_class_return_value_and_has_aux_together():
    f4 = F4()
    grad, value, aux = bridge.grad(f4, grad_vars=f4.a, has_aux=True, return_value=True)(10.0)
    close(grad, [1.0])
    assert float(value) == 11.0
    close(aux[1], [2.0])


def test_non_scalar_output_raises_type_error_naming_the_shape():
    with pytest.raises(TypeError, match=r"\(2,\)"):
        bridge.grad(lambda x: x)(jnp.zeros(2))


def test_gradient_of_mean_is_one_half_each():
    close(bridge.grad(lambda x: x.mean())(jnp.zeros(2)), [0.5, 0.5])


# ----- vector_grad ------------------------------------------------------------------------

def sin_b_times_a(a, b):
    return jnp.sin(b) * a


VEC_A = jnp.arange(5.0)
VEC_B = jax.random.uniform(jax.random.PRNGKey(2), (5,))
MAT_A = jnp.arange(6.0).reshape((2, 3))
MAT_B = jax.random.uniform(jax.random.PRNGKey(3), (2, 3))


def test_vector_grad_on_vectors_default_argument_is_sin_b():
    close(bridge.vector_grad(sin_b_times_a)(VEC_A, VEC_B), jnp.sin(VEC_B))


def test_vector_grad_on_vectors_argnums_tuple_is_sin_b_and_a_cos_b():
    da, db = bridge.vector_grad(sin_b_times_a, argnums=(0, 1))(VEC_A, VEC_B)
    close(da, jnp.sin(VEC_B))
    close(db, VEC_A * jnp.cos(VEC_B))
    # Also the diagonal of the Jacobian computed by plain JAX.
    close(db, jnp.diag(jax.jacrev(sin_b_times_a, argnums=1)(VEC_A, VEC_B)))


def test_vector_grad_on_matrices_argnums_1_is_a_cos_b():
    close(bridge.vector_grad(sin_b_times_a, argnums=1)(MAT_A, MAT_B), MAT_A * jnp.cos(MAT_B))


def test_vector_grad_on_matrices_argnums_tuple():
    da, db = bridge.vector_grad(sin_b_times_a, argnums=(0, 1))(MAT_A, MAT_B)
    close(da, jnp.sin(MAT_B))
    close(db, MAT_A * jnp.cos(MAT_B))


def test_vector_grad_return_value_and_has_aux_as_in_grad():
    def with_aux(a, b):
        out = sin_b_times_a(a, b)
        return out, out.sum()

    grads, value, aux = bridge.vector_grad(with_aux, argnums=1, has_aux=True,
                                           return_value=True)(VEC_A, VEC_B)
    close(grads, VEC_A * jnp.cos(VEC_B))
    close(value, sin_b_times_a(VEC_A, VEC_B))
    close(aux, sin_b_times_a(VEC_A, VEC_B).sum())


class VecTest(bridge.Module):
    """The page's first ``Test`` class (renamed so that pytest does not collect it)."""

    def __init__(self):
        self.x = bridge.StateVar(jnp.ones(5))
        self.y = bridge.StateVar(jnp.ones(5))

    def __call__(self):
        return self.x ** 2 + self.y ** 3 + 10


def test_vector_grad_class_single_variable_gives_one_array():
    t = VecTest()
    close(bridge.vector_grad(t, grad_vars=t.x)(), 2 * jnp.ones(5))


def test_vector_grad_class_one_variable_tuple_gives_a_one_tuple():
    t = VecTest()
    grads = bridge.vector_grad(t, grad_vars=(t.x,))()
    assert isinstance(grads, tuple) and len(grads) == 1
    close(grads[0], 2 * jnp.ones(5))


def test_vector_grad_class_two_variables_gives_a_pair():
    t = VecTest()
    gx, gy = bridge.vector_grad(t, grad_vars=(t.x, t.y))()
    close(gx, 2 * jnp.ones(5))
    close(gy, 3 * jnp.ones(5))


# ----- jacobian ---------------------------------------------------------------------------

def f1(x, y):
    a = 4 * x[1] ** 2 - 2 * x[2]
    r = jnp.asarray([x[0] * y[0], 5 * x[2] * y[1], a, x[2] * jnp.sin(x[0])])
    return r, a


X_ = jnp.array([1.0, 2.0, 3.0])
Y_ = jnp.array([10.0, 5.0])
JAC_X = [[10.0, 0.0, 0.0], [0.0, 0.0, 25.0], [0.0, 16.0, -2.0], [1.6209068, 0.0, 0.84147096]]
JAC_Y = [[1.0, 0.0], [0.0, 15.0], [0.0, 0.0], [0.0, 0.0]]
VALUE = [10.0, 75.0, 10.0, 2.5244129]


@pytest.mark.parametrize("transform", [bridge.jacobian, bridge.jacrev, bridge.jacfwd],
                         ids=["jacobian", "jacrev", "jacfwd"])
def test_jacobian_of_pure_function_with_value_and_aux(transform):
    grads, vec, aux = transform(f1, return_value=True, has_aux=True)(X_, Y_)
    close(grads, JAC_X)
    close(vec, VALUE)
    assert float(aux) == 10.0
    close(grads, jax.jacrev(lambda x: f1(x, Y_)[0])(X_))


class JacTest(bridge.Module):
    """The page's second ``Test`` class."""

    def __init__(self):
        self.x = bridge.StateVar(jnp.array([1.0, 2.0, 3.0]))

    def __call__(self, y):
        a = self.x[0] * y[0]
        b = 5 * self.x[2] * y[1]
        c = 4 * self.x[1] ** 2 - 2 * self.x[2]
        d = self.x[2] * jnp.sin(self.x[0])
        r = jnp.asarray([a, b, c, d])
        return r, (c, d)


@pytest.mark.parametrize("transform", [bridge.jacobian, bridge.jacrev, bridge.jacfwd],
                         ids=["jacobian", "jacrev", "jacfwd"])
def test_jacobian_of_class_with_grad_vars_argnums_aux_and_value(transform):
    t = JacTest()
    f_grad = transform(t, grad_vars=t.x, argnums=0, has_aux=True, return_value=True)
    (var_grads, arg_grads), value, aux = f_grad(Y_)
    close(var_grads, JAC_X)
    close(arg_grads, JAC_Y)
    close(value, VALUE)
    c, d = aux
    assert float(c) == 10.0
    close(d, 2.5244129)


def test_jacobian_of_class_with_variable_tuple_matches_jax_jacrev():
    t = JacTest()
    (var_grads, arg_grads), value, aux = bridge.jacobian(
        t, grad_vars=(t.x,), argnums=0, has_aux=True, return_value=True)(Y_)
    ref_x, ref_y = jax.jacrev(lambda x, y: f1(x, y)[0], argnums=(0, 1))(X_, Y_)
    assert isinstance(var_grads, tuple) and len(var_grads) == 1
    close(var_grads[0], ref_x)
    close(arg_grads, ref_y)


# ----- hessian ----------------------------------------------------------------------------

def test_hessian_of_pure_function_with_argnums_tuple_matches_jax():
    def f(a, b):
        return jnp.sum(jnp.sin(b) * a ** 2)

    ours = bridge.hessian(f, argnums=(0, 1))(VEC_A, VEC_B)
    ref = jax.hessian(f, argnums=(0, 1))(VEC_A, VEC_B)
    jax.tree_util.tree_map(close, ours, ref)


def test_hessian_of_class_with_grad_vars_list_matches_jax():
    f3 = F3()
    ours = bridge.hessian(f3, grad_vars=[f3.a, f3.b])(10.0, 3.0)

    def ref(a, b):
        return (a * b * 2 + 10.0 * 3.0).mean()

    expected = jax.hessian(ref, argnums=(0, 1))(f3.a.value, f3.b.value)
    jax.tree_util.tree_map(close, ours, expected)
    close(ours[0][1], [[2.0]])
