"""The Objax gradient guide (seed 000), run with ``import bridge as objax``.

Each test is one section of the guide; numbers are checked against plain JAX.
"""

import jax
import numpy as np
import optax
import pytest

import bridge as objax


def plain_params(model):
    return [v.value for v in model.vars().subset(objax.TrainVar)]


def classifier():
    objax.random.DEFAULT_GENERATOR.seed(0)
    return objax.nn.Sequential([objax.nn.Linear(2, 3), objax.functional.relu,
                                objax.nn.Linear(3, 4)])


def ref_logits(params, x):
    b0, w0, b1, w1 = params
    return jax.nn.relu(x @ w0 + b0) @ w1 + b1


def ref_xe(params, x, labels):
    return optax.softmax_cross_entropy(ref_logits(params, x), labels).mean()


def data(n=100):
    x = objax.random.normal((n, 2))
    labels = objax.functional.one_hot(objax.random.randint((n,), low=0, high=4), 4)
    return x, labels


def test_simple_example_gradient_of_linear_regression():
    m = objax.nn.Linear(2, 3)

    @objax.Function.with_vars(m.vars())
    def loss(x, y):
        return ((m(x) - y) ** 2).mean()

    gradient_loss = objax.GradValues(loss, m.vars())
    x, y = objax.random.normal((100, 2)), objax.random.normal((100, 3))
    g, v = gradient_loss(x, y)

    def ref(b, w):
        return (((x @ w + b) - y) ** 2).mean()

    np.testing.assert_allclose(v[0], loss(x, y), rtol=1e-6)
    for ours, theirs in zip(g, jax.grad(ref, (0, 1))(m.b.value, m.w.value)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_gradient_module_shares_the_model_variables():
    m = objax.nn.Linear(2, 3)
    loss = objax.Function.with_vars(m.vars())(lambda x, y: ((m(x) - y) ** 2).mean())
    gradient_loss = objax.GradValues(loss, m.vars())
    assert str(gradient_loss.vars()) == str(m.vars())
    assert str(m.vars()).splitlines() == ["(Linear).b                  3 (3,)",
                                          "(Linear).w                  6 (2, 3)",
                                          "+Total(2)                   9"]
    for a, b in zip(gradient_loss.vars().values(), m.vars().values()):
        assert a is b


class SGD(objax.Module):
    """The guide's optimizer written from scratch."""

    def __init__(self, variables):
        self.refs = objax.ModuleList(objax.TrainRef(x) for x in variables.subset(objax.TrainVar))

    def __call__(self, lr, gradients):
        for v, g in zip(self.refs, gradients):
            v.value -= lr * g


def test_sgd_from_scratch_training_iteration_matches_plain_jax():
    my_classifier = classifier()
    opt = SGD(my_classifier.vars())

    @objax.Function.with_vars(my_classifier.vars())
    def loss(x, labels):
        logits = my_classifier(x)
        return objax.functional.loss.cross_entropy_logits(logits, labels).mean()

    gv = objax.GradValues(loss, my_classifier.vars())

    @objax.Function.with_vars(my_classifier.vars() + opt.vars())
    def train(x, labels, lr):
        g, v = gv(x, labels)
        opt(lr, g)
        return v

    assert list(gv.vars().keys()) == ["(Sequential)[0](Linear).b", "(Sequential)[0](Linear).w",
                                      "(Sequential)[2](Linear).b", "(Sequential)[2](Linear).w"]
    x, labels = data()
    params = plain_params(my_classifier)
    jit_train = objax.Jit(train)
    for _ in range(3):
        v = jit_train(x, labels, lr=0.01)
        grads = jax.grad(ref_xe)(params, x, labels)
        np.testing.assert_allclose(v[0], ref_xe(params, x, labels), rtol=1e-5)
        params = [p - 0.01 * g for p, g in zip(params, grads)]
    for ours, theirs in zip(plain_params(my_classifier), params):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_multiple_return_values():
    my_classifier = classifier()

    @objax.Function.with_vars(my_classifier.vars())
    def losses(x, labels):
        logits = my_classifier(x)
        loss_xe = objax.functional.loss.cross_entropy_logits(logits, labels).mean()
        loss_wd = sum((v ** 2).sum() for k, v in my_classifier.vars().items() if k.endswith('.w'))
        return loss_xe + 0.0002 * loss_wd, loss_xe, loss_wd

    x, labels = data()
    g, v = objax.GradValues(losses, my_classifier.vars())(x, labels)
    params = plain_params(my_classifier)
    wd = sum((p ** 2).sum() for p in params[1::2])
    np.testing.assert_allclose(v[1], ref_xe(params, x, labels), rtol=1e-5)
    np.testing.assert_allclose(v[2], wd, rtol=1e-5)
    np.testing.assert_allclose(v[0], v[1] + 0.0002 * v[2], rtol=1e-6)
    expected = jax.grad(lambda p: ref_xe(p, x, labels)
                        + 0.0002 * sum((w ** 2).sum() for w in p[1::2]))(params)
    for ours, theirs in zip(g, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_dict_return_values():
    my_classifier = classifier()

    @objax.Function.with_vars(my_classifier.vars())
    def loss_dict(x, labels):
        logits = my_classifier(x)
        loss_xe = objax.functional.loss.cross_entropy_logits(logits, labels).mean()
        loss_wd = sum((v ** 2).sum() for k, v in my_classifier.vars().items() if k.endswith('.w'))
        return loss_xe + 0.0002 * loss_wd, {'loss/xe': loss_xe, 'loss/wd': loss_wd}

    x, labels = data()
    _, v = objax.GradValues(loss_dict, my_classifier.vars())(x, labels)
    assert sorted(v[1]) == ['loss/wd', 'loss/xe']
    np.testing.assert_allclose(v[1]['loss/xe'], ref_xe(plain_params(my_classifier), x, labels),
                               rtol=1e-5)


@pytest.mark.parametrize("input_argnums", [(0,), (1,), (0, 1), (1, 0)])
def test_input_argnums_gradients_first_in_the_given_order(input_argnums):
    my_classifier = classifier()

    @objax.Function.with_vars(my_classifier.vars())
    def loss(x, labels):
        return objax.functional.loss.cross_entropy_logits(my_classifier(x), labels).mean()

    x, labels = data()
    g, _ = objax.GradValues(loss, my_classifier.vars(), input_argnums=input_argnums)(x, labels)
    params = plain_params(my_classifier)
    ref_inputs = jax.grad(lambda x, labels: ref_xe(params, x, labels), argnums=input_argnums)(
        x, labels)
    assert len(g) == len(input_argnums) + 4
    for ours, theirs in zip(g, ref_inputs):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_input_gradients_alone():
    my_classifier = classifier()
    loss = objax.Function.with_vars(my_classifier.vars())(
        lambda x, labels: objax.functional.loss.cross_entropy_logits(my_classifier(x),
                                                                      labels).mean())
    x, labels = data()
    g, _ = objax.GradValues(loss, objax.VarCollection(), input_argnums=(0,))(x, labels)
    assert len(g) == 1 and g[0].shape == x.shape


def test_gradients_of_a_subset_freeze_the_rest():
    my_classifier = classifier()
    all_vars = my_classifier.vars()
    vars_train = objax.VarCollection((k, v) for k, v in all_vars.items() if '[2](Linear)' not in k)
    assert str(vars_train).splitlines()[-1].split() == ["+Total(2)", "9"]

    @objax.Function.with_vars(my_classifier.vars())
    def loss(x, labels):
        return objax.functional.loss.cross_entropy_logits(my_classifier(x), labels).mean()

    x, labels = data()
    g, _ = objax.GradValues(loss, vars_train)(x, labels)
    params = plain_params(my_classifier)
    expected = jax.grad(lambda b0, w0: ref_xe([b0, w0] + params[2:], x, labels), (0, 1))(
        *params[:2])
    assert len(g) == 2
    for ours, theirs in zip(g, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def reference_nested(params, x1, y1, x2, y2, mu):
    inner = jax.grad(ref_xe)(params, x2, y2)
    return ref_xe([p - mu * g for p, g in zip(params, inner)], x1, y1)


def nested_setup():
    my_classifier = classifier()
    train_vars = my_classifier.vars().subset(objax.TrainVar)

    @objax.Function.with_vars(my_classifier.vars())
    def loss(x, labels):
        return objax.functional.loss.cross_entropy_logits(my_classifier(x), labels).mean()

    return my_classifier, train_vars, loss, objax.GradValues(loss, train_vars)


def test_nested_loss_with_assign_and_restore():
    my_classifier, train_vars, loss, gradient_loss = nested_setup()

    @objax.Function.with_vars(my_classifier.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        original_values = train_vars.tensors()
        for v, g in zip(train_vars, gradient_loss(x2, y2)[0]):
            v.assign(v.value - mu * g)
        loss_x1y1 = loss(x1, y1)
        for v, val in zip(train_vars, original_values):
            v.assign(val)
        return loss_x1y1

    x1, y1 = data(1)
    x2, y2 = data(1)
    params = plain_params(my_classifier)
    g, v = objax.Jit(objax.GradValues(nested_loss, my_classifier.vars()))(x1, y1, x2, y2, 0.1)
    np.testing.assert_allclose(v[0], reference_nested(params, x1, y1, x2, y2, 0.1), rtol=1e-5)
    expected = jax.grad(reference_nested)(params, x1, y1, x2, y2, 0.1)
    assert [a.shape for a in g] == [(3,), (2, 3), (4,), (3, 4)]
    for ours, theirs in zip(g, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(plain_params(my_classifier), params):  # restored afterwards
        np.testing.assert_array_equal(ours, theirs)


def test_simplified_invertible_nested_loss_gives_the_same_numbers():
    my_classifier, train_vars, loss, gradient_loss = nested_setup()

    @objax.Function.with_vars(my_classifier.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        g_x2y2 = gradient_loss(x2, y2)[0]
        for v, g in zip(train_vars, g_x2y2):
            v.assign(v.value - mu * g)
        loss_x1y1 = loss(x1, y1)
        for v, g in zip(train_vars, g_x2y2):
            v.assign(v.value + mu * g)
        return loss_x1y1

    x1, y1 = data(1)
    x2, y2 = data(1)
    params = plain_params(my_classifier)
    g, v = objax.GradValues(nested_loss, my_classifier.vars())(x1, y1, x2, y2, 0.1)
    np.testing.assert_allclose(v[0], reference_nested(params, x1, y1, x2, y2, 0.1), rtol=1e-5)
    for ours, theirs in zip(g, jax.grad(reference_nested)(params, x1, y1, x2, y2, 0.1)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_vectorized_pairwise_nested_loss_and_its_gradient():
    my_classifier, train_vars, loss, gradient_loss = nested_setup()

    @objax.Function.with_vars(my_classifier.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        original_values = train_vars.tensors()
        for v, g in zip(train_vars, gradient_loss(x2, y2)[0]):
            v.assign(v.value - mu * g)
        loss_x1y1 = loss(x1, y1)
        for v, val in zip(train_vars, original_values):
            v.assign(val)
        return loss_x1y1

    vec_nested_loss = objax.Vectorize(nested_loss, batch_axis=(0, 0, 0, 0, None))

    @objax.Function.with_vars(my_classifier.vars())
    def nested_pairwise_loss(X1, Y1, X2, Y2, mu):
        return vec_nested_loss(X1, Y1, X2, Y2, mu).mean()

    # 5 tasks, each with a batch of 3 query and 3 support points.
    X1, Y1 = data(15)
    X2, Y2 = data(15)
    X1, X2 = X1.reshape(5, 3, 2), X2.reshape(5, 3, 2)
    Y1, Y2 = Y1.reshape(5, 3, 4), Y2.reshape(5, 3, 4)
    params = plain_params(my_classifier)

    def reference(params):
        per_task = jax.vmap(reference_nested, (None, 0, 0, 0, 0, None))(params, X1, Y1, X2, Y2, 0.1)
        return per_task.mean()

    np.testing.assert_allclose(objax.Jit(nested_pairwise_loss)(X1, Y1, X2, Y2, 0.1),
                               reference(params), rtol=1e-5)
    g, v = objax.Jit(objax.GradValues(nested_pairwise_loss, my_classifier.vars()))(
        X1, Y1, X2, Y2, 0.1)
    np.testing.assert_allclose(v[0], reference(params), rtol=1e-5)
    for ours, theirs in zip(g, jax.grad(reference)(params)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_objax_nested_loss_forms_equal_bridge_pure():
    """The guide's assign/restore nested loss and its vectorized pairwise form give the
    same values and gradients as bridge.pure.nested_loss / pairwise_nested_loss."""
    my_classifier, train_vars, loss, gradient_loss = nested_setup()

    @objax.Function.with_vars(my_classifier.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        original_values = train_vars.tensors()
        for v, g in zip(train_vars, gradient_loss(x2, y2)[0]):
            v.assign(v.value - mu * g)
        loss_x1y1 = loss(x1, y1)
        for v, val in zip(train_vars, original_values):
            v.assign(val)
        return loss_x1y1

    vec_nested_loss = objax.Vectorize(nested_loss, batch_axis=(0, 0, 0, 0, None))
    pairwise = objax.Function.with_vars(my_classifier.vars())(
        lambda X1, Y1, X2, Y2, mu: vec_nested_loss(X1, Y1, X2, Y2, mu).mean())

    X1, Y1 = data(12)
    X2, Y2 = data(12)
    X1, X2 = X1.reshape(4, 3, 2), X2.reshape(4, 3, 2)
    Y1, Y2 = Y1.reshape(4, 3, 4), Y2.reshape(4, 3, 4)
    params = plain_params(my_classifier)
    pure_single = objax.pure.nested_loss(ref_xe, 0.1)
    pure_pairwise = objax.pure.pairwise_nested_loss(ref_xe, 0.1)

    g, v = objax.Jit(objax.GradValues(nested_loss, my_classifier.vars()))(
        X1[0], Y1[0], X2[0], Y2[0], 0.1)
    np.testing.assert_allclose(v[0], pure_single(params, X1[0], Y1[0], X2[0], Y2[0]), rtol=1e-5)
    for ours, theirs in zip(g, jax.grad(pure_single)(params, X1[0], Y1[0], X2[0], Y2[0])):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)

    g, v = objax.Jit(objax.GradValues(pairwise, my_classifier.vars()))(X1, Y1, X2, Y2, 0.1)
    np.testing.assert_allclose(v[0], pure_pairwise(params, X1, Y1, X2, Y2), rtol=1e-5)
    for ours, theirs in zip(g, jax.grad(pure_pairwise)(params, X1, Y1, X2, Y2)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
