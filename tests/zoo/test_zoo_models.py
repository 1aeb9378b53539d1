"""bridge.zoo models: outputs against Objax and hand-written references, shapes, training vs
eval, gradient steps, slicing, and the argument errors."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.zoo.convnet import ConvNet
from bridge.zoo.dnnet import DNNet
from bridge.zoo.resnet_v2 import ResNet18, ResNetV2, ResNetV2Block, ResNetV2BlockGroup
from bridge.zoo.rnn import RNN
from bridge.zoo.wide_resnet import BN_MOM, WideResNet, WideResNetGeneral, WRNBlock

HERE = pathlib.Path(__file__).parent
OUTPUTS = json.loads((HERE / "objax_zoo_outputs.json").read_text())
ARRAYS = np.load(HERE / "objax_zoo_outputs.npz")


def arrays_under(prefix):
    return {key[len(prefix):]: ARRAYS[key] for key in ARRAYS.files if key.startswith(prefix)}


def rand(*shape, seed=0):
    return jnp.asarray(np.random.RandomState(seed).normal(size=shape), jnp.float32)


# ----- against Objax 1.8 --------------------------------------------------------------------

@pytest.mark.parametrize("case", OUTPUTS["cases"], ids=lambda c: c["id"])
def test_outputs_equal_objax_with_objax_weights(case, build_case):
    """Objax's initial weights loaded into the bridge model give Objax's outputs, call after
    call (eval, training, eval again), and the same running statistics / RNN state."""
    model = build_case(case)
    weights = arrays_under(f"{case['id']}/init/")
    assert sorted(weights) == sorted(model.vars().keys())
    for name, var in model.vars().items():
        var.assign(jnp.asarray(weights[name]))
    x = ARRAYS[f"{case['id']}/x"]
    for i, kwargs in enumerate(case["call_kwargs"]):
        np.testing.assert_allclose(model(x, **kwargs), ARRAYS[f"{case['id']}/out{i}"],
                                   rtol=1e-5, atol=1e-5, err_msg=f"call {i} {kwargs}")
    final = arrays_under(f"{case['id']}/final/")
    for name, value in final.items():
        np.testing.assert_allclose(model.vars()[name].value, value, rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_objax_checkpoint_restores_into_bridge_model(build_case):
    """A file written by ``objax.io.save_var_collection`` (after a training call) restores
    into the bridge model, which then reproduces Objax's eval output."""
    case = next(c for c in OUTPUTS["cases"] if c["id"] == "wide_resnet")
    model = build_case(case)
    bridge.io.load_var_collection(str(HERE / "objax_wide_resnet_checkpoint.npz"), model.vars())
    for name, value in arrays_under("wide_resnet/final/").items():
        np.testing.assert_array_equal(model.vars()[name].value, value, err_msg=name)
    last = len(case["call_kwargs"]) - 1
    assert case["call_kwargs"][last] == {"training": False}
    np.testing.assert_allclose(model(ARRAYS["wide_resnet/x"], training=False),
                               ARRAYS[f"wide_resnet/out{last}"], rtol=1e-5, atol=1e-5)


# ----- against hand-written references ------------------------------------------------------

def test_dnnet_is_the_plain_mlp():
    model = DNNet((4, 8, 6, 3), jnp.tanh)
    x = rand(5, 4)
    h = x
    for layer in (model[0], model[2], model[4]):
        h = jnp.tanh(h @ np.asarray(layer.w.value) + np.asarray(layer.b.value))
    np.testing.assert_allclose(model(x), h, rtol=1e-6, atol=1e-6)
    assert [type(layer).__name__ for layer in model[::2]] == ["Linear"] * 3


def test_rnn_matches_a_numpy_loop_and_keeps_its_state():
    rnn = RNN(nstate=6, nin=3, nout=2)
    rnn.init_state(4)
    xs = np.random.RandomState(1).normal(size=(5, 4, 3)).astype(np.float32)
    w_xh, w_hh, b_h = (np.asarray(v.value) for v in (rnn.w_xh, rnn.w_hh, rnn.b_h))
    w_o, b_o = np.asarray(rnn.output_layer.w.value), np.asarray(rnn.output_layer.b.value)

    h, expected = np.zeros((4, 6), np.float32), []
    for x in xs:
        h = np.tanh(x @ w_xh + h @ w_hh + b_h)
        expected.append(h @ w_o + b_o)
    out = rnn(xs)
    assert out.shape == (5 * 4, 2)
    np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rnn.state.value, h, rtol=1e-5, atol=1e-5)

    # The next call starts from the state the previous one left.
    h2 = np.tanh(xs[0] @ w_xh + h @ w_hh + b_h)
    final = rnn(xs[:1], only_return_final=True)
    np.testing.assert_allclose(final, h2 @ w_o + b_o, rtol=1e-5, atol=1e-5)


def test_rnn_without_state_says_what_to_do():
    with pytest.raises(AttributeError, match="init_state"):
        RNN(4, 2, 2)(jnp.zeros((3, 1, 2)))


def test_wrn_block_batch_norm_uses_objax_momentum():
    """One training call moves running_mean to (1 - BN_MOM) times the batch mean."""
    block = WRNBlock(4, 4)
    x = rand(6, 4, 5, 5) + 3
    block(x, training=True)
    expected = (1 - BN_MOM) * np.asarray(x).mean((0, 2, 3)).reshape(1, 4, 1, 1)
    np.testing.assert_allclose(block.norm_1.running_mean.value, expected, rtol=1e-5)


def test_wrn_block_identity_and_projection_shortcuts():
    same = WRNBlock(8, 8)
    assert same.proj_conv is None
    x = rand(2, 8, 6, 6)
    # Zero residual branch: the block is the identity.
    same.conv_2.w.assign(jnp.zeros_like(same.conv_2.w.value))
    np.testing.assert_allclose(same(x, training=False), x)

    wider = WRNBlock(8, 16, stride=2)
    assert wider.proj_conv.w.shape == (1, 1, 8, 16)
    assert wider(x, training=False).shape == (2, 16, 3, 3)


def test_resnet_v2_strided_identity_shortcut_subsamples():
    """Without projection a stride-2 block adds the input taken every second pixel."""
    block = ResNetV2Block(4, 4, stride=2, use_projection=False, bottleneck=False)
    assert not hasattr(block, "proj_conv")
    block.conv_1.w.assign(jnp.zeros_like(block.conv_1.w.value))  # zero residual branch
    x = rand(2, 4, 7, 7)
    np.testing.assert_allclose(block(x, training=False), x[:, :, ::2, ::2])


# ----- shapes, modes, slicing ---------------------------------------------------------------

@pytest.mark.parametrize("nin, nout, stride, projection, bottleneck, out_hw", [
    (8, 8, 1, False, False, 9),
    (8, 16, 2, True, False, 5),
    (8, 32, 2, True, True, 5),
    (32, 32, 1, False, True, 9),
])
def test_resnet_v2_block_shapes(nin, nout, stride, projection, bottleneck, out_hw):
    block = ResNetV2Block(nin, nout, stride, projection, bottleneck)
    for training in (False, True):
        assert block(rand(2, nin, 9, 9), training=training).shape == (2, nout, out_hw, out_hw)


def test_resnet_v2_group_stride_is_on_the_last_block():
    group = ResNetV2BlockGroup(8, 16, num_blocks=3, stride=2, use_projection=True,
                               bottleneck=False)
    assert [b.stride for b in group] == [1, 1, 2]
    assert [hasattr(b, "proj_conv") for b in group] == [True, False, False]
    assert group(rand(1, 8, 8, 8), training=True).shape == (1, 16, 4, 4)


def test_convnet_shapes_and_pooling():
    model = ConvNet(nin=1, nclass=5, scales=2, filters=4, filters_max=6,
                    pooling=bridge.functional.average_pool_2d, ignored_option=True)
    assert [layer.w.shape[-1] for layer in model if isinstance(layer, bridge.nn.Conv2D)] == \
        [4, 4, 6, 6, 6, 5]
    # Shapes only: jax.eval_shape traces the model without compiling each operation.
    assert jax.eval_shape(model, rand(3, 1, 8, 8)).shape == (3, 5)


def test_wide_resnet_training_and_eval_modes():
    model = WideResNetGeneral(3, 5, blocks_per_group=[1, 1], width=1)
    x = rand(4, 3, 8, 8)
    stats = {k: np.asarray(v.value) for k, v in model.vars().subset(bridge.StateVar).items()}
    eval_1 = model(x, training=False)
    eval_2 = model(x, training=False)
    np.testing.assert_array_equal(eval_1, eval_2)
    for name, value in model.vars().subset(bridge.StateVar).items():
        np.testing.assert_array_equal(value.value, stats[name], err_msg=name)

    train = model(x, training=True)
    assert train.shape == eval_1.shape == (4, 5)
    assert not np.allclose(train, eval_1)
    changed = [name for name, v in model.vars().subset(bridge.StateVar).items()
               if not np.array_equal(v.value, stats[name])]
    assert len(changed) == len(stats)  # every running mean and variance moved


def test_slices_are_plain_sequentials():
    model = WideResNetGeneral(3, 5, blocks_per_group=[1], width=1)
    features = model[:-1]
    assert type(features) is bridge.nn.Sequential
    x = rand(2, 3, 8, 8)
    np.testing.assert_allclose(model[-1](features(x, training=False)),
                               model(x, training=False), rtol=1e-6)
    assert type(DNNet((2, 3, 4), jnp.tanh)[:2]) is bridge.nn.Sequential


def test_jit_forward_equals_eager():
    model = WideResNetGeneral(3, 5, blocks_per_group=[1, 1], width=1)
    x = rand(2, 3, 8, 8)
    jitted = bridge.Jit(lambda x: model(x, training=False), model.vars())
    np.testing.assert_allclose(jitted(x), model(x, training=False), rtol=1e-5, atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(3, 10, depth=12)
    with pytest.raises(ValueError, match="at least two"):
        DNNet([3], jnp.tanh)
    with pytest.raises(ValueError, match="group_strides has 1 entries"):
        ResNetV2(3, 10, blocks_per_group=[1, 1], channels_per_group=[8, 8], group_strides=[1],
                 group_use_projection=[True, True])


# ----- training steps -----------------------------------------------------------------------

def train_steps(model, x, y, steps):
    """``steps`` Momentum steps of softmax cross-entropy under Jit(GradValues), returning the
    losses and the gradients of the first step."""
    opt = bridge.optimizer.Momentum(model.vars())

    def loss(x, y):
        logits = model(x, training=True)
        return bridge.functional.loss.cross_entropy_logits_sparse(logits, y).mean()

    grad_values = bridge.GradValues(loss, model.vars())

    def step(x, y):
        grads, values = grad_values(x, y)
        opt(0.05, grads)
        return grads, values[0]

    step = bridge.Jit(step, grad_values.vars() + opt.vars())
    first_grads, losses = None, []
    for _ in range(steps):
        grads, value = step(x, y)
        first_grads = grads if first_grads is None else first_grads
        losses.append(float(value))
    return losses, first_grads


def check_training(model, x, y, steps):
    head = model[-1]
    train_vars = list(model.vars().subset(bridge.TrainVar).keys())
    stats = {k: np.asarray(v.value) for k, v in model.vars().subset(bridge.StateVar).items()}
    # The classifier's gradient by hand, from the features of the same (training) pass:
    # d mean_xent / d logits = (softmax(logits) - one_hot(y)) / N.
    features = np.asarray(model[:-1](x, training=True))
    for name, var in model.vars().subset(bridge.StateVar).items():
        var.assign(jnp.asarray(stats[name]))  # undo that pass's statistics update
    logits = features @ np.asarray(head.w.value) + np.asarray(head.b.value)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dlogits = (probs - np.eye(logits.shape[1])[np.asarray(y)]) / len(y)

    losses, grads = train_steps(model, x, y, steps)
    assert len(grads) == len(train_vars)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    np.testing.assert_allclose(grads[-2], dlogits.sum(0), rtol=1e-4, atol=1e-6)  # head.b
    np.testing.assert_allclose(grads[-1], features.T @ dlogits, rtol=1e-4, atol=1e-5)  # head.w
    assert losses[-1] < losses[0]
    moved = [k for k, v in model.vars().subset(bridge.StateVar).items()
             if not np.array_equal(v.value, stats[k])]
    assert moved, "training steps must update the batch-norm statistics"


@pytest.mark.slow
def test_wide_resnet_gradient_step():
    model = WideResNet(3, 4, depth=10, width=1)
    check_training(model, rand(4, 3, 8, 8), jnp.array([0, 1, 2, 3]), steps=3)


@pytest.mark.slow
@pytest.mark.slow
def test_resnet18_gradient_step():
    # 64x64 leaves 2x2 pixels at the last stage: with 1x1, a batch of two normalizes every
    # channel to +-1, where rounding differences between jit and eager get amplified.
    model = ResNet18(in_channels=3, num_classes=4)
    check_training(model, rand(2, 3, 64, 64), jnp.array([1, 3]), steps=2)


@pytest.mark.slow
def test_resnet18_forward_shapes_both_modes():
    model = ResNet18(3, 7)
    x = rand(2, 3, 64, 64)
    assert model(x, training=False).shape == (2, 7)
    assert model(x, training=True).shape == (2, 7)
    assert model[:3](x).shape == (2, 64, 16, 16)  # stem: conv /2, pad, max pool /2
