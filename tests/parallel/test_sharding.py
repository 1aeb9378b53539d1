"""``bridge.sharding``: name rules to ``PartitionSpec``s, sharded training and checkpoints.

The rules' logic (matching, errors) runs here on one device. Sharded training needs 8
devices, which exist only when ``XLA_FLAGS`` asks for them before JAX starts, so it runs
in a separate process (``sharding_worker.py``), as the data-parallel tests do; the
reference is the same training on one device.
"""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import bridge
import bridge.sharding as bs

WORKER = pathlib.Path(__file__).with_name("sharding_worker.py")
ROOT = WORKER.parents[2]
LAYOUTS = ("fsdp", "tensor_parallel", "data_x_model")


# ----- 8 devices, in a subprocess ---------------------------------------------------------------
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


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sharded_step_equals_the_one_device_step(runs, layout):
    """Three Adam steps: same losses and same weights and optimizer state (1e-5)."""
    one, sharded = runs["one_device"], runs[layout]
    np.testing.assert_allclose(sharded["losses"], one["losses"], rtol=1e-5, atol=1e-5)
    assert sorted(sharded["variables"]) == sorted(one["variables"])
    for name, value in one["variables"].items():
        np.testing.assert_allclose(sharded["variables"][name], value, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{layout}: {name}")


@pytest.mark.parametrize("layout", ["fsdp", "tensor_parallel"])
def test_each_device_holds_an_eighth_of_each_sharded_weight(runs, layout):
    split = 0
    for name, row in runs[layout]["layout_before"].items():
        assert row["devices"] == 8, name
        assert len(row["shards"]) == 8, name
        if any(row["spec"]):
            split += 1
            assert all(math.prod(s) * 8 == math.prod(row["shape"]) for s in row["shards"]), name
        else:
            assert all(s == row["shape"] for s in row["shards"]), name
    # each weight under its two names (the model's, Optax's ref) and its two Adam moments;
    # FSDP splits all 4 weights and biases, Megatron all but the last bias
    assert split == (16 if layout == "fsdp" else 12)


def test_the_layouts_are_the_ones_the_rules_give(runs):
    fsdp = runs["fsdp"]["layout_before"]
    assert fsdp["(MLP).layers(Sequential)[0](Linear).w"]["spec"] == [None, "data"]
    assert fsdp["(MLP).layers(Sequential)[2](Linear).w"]["spec"] == ["data"]
    tp = runs["tensor_parallel"]["layout_before"]
    assert tp["(MLP).layers(Sequential)[0](Linear).w"]["shards"][0] == [16, 8]   # columns
    assert tp["(MLP).layers(Sequential)[2](Linear).w"]["shards"][0] == [8, 8]    # rows
    assert tp["(MLP).layers(Sequential)[2](Linear).b"]["spec"] == []             # replicated
    # Adam's mu and nu follow their parameter; the step counter is replicated
    specs = runs["tensor_parallel"]["specs"]
    assert specs["(Optax).state(ModuleList)[0]"] == []
    assert specs["(Optax).state(ModuleList)[2]"] == [None, "model"]
    assert specs["(Optax).state(ModuleList)[6]"] == [None, "model"]
    # 2 x 4 mesh: weights split over 'model' only, so each device holds a quarter
    both = runs["data_x_model"]["layout_before"]
    assert both["(MLP).layers(Sequential)[0](Linear).w"]["shards"][0] == [16, 16]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weights_and_optimizer_state_stay_sharded_across_steps(runs, layout):
    assert runs[layout]["not_kept"] == []
    assert runs[layout]["layout_after"] == runs[layout]["layout_before"] or all(
        runs[layout]["layout_after"][k]["shards"] == runs[layout]["layout_before"][k]["shards"]
        for k in runs[layout]["layout_before"])


@pytest.mark.parametrize("fmt", ["msgpack", "npz"])
def test_checkpoint_round_trip_keeps_values_and_shardings(runs, fmt):
    done = runs["checkpoints"][fmt]
    assert done["not_placed_before"] == []
    assert done == {"step": 3, "equal": True, "not_kept": [], "not_placed_before": []}


def test_from_tree_and_key_arrays_keep_shardings(runs):
    done = runs["checkpoints"]
    assert done["from_tree"] == {"inputs_on_one_device": True, "not_kept": [], "equal": True}
    assert done["key"] == {"devices": 8, "equal": True}


def test_bad_specs_give_one_error_listing_every_problem(runs):
    done = runs["bad_specs"]
    assert done["unchanged"]
    lines = done["message"].splitlines()
    assert lines[0] == "shard; nothing was changed because:"
    assert len(lines) == 3
    assert "[0](Linear).b: shape (64,), spec P(None, 'data'): the spec has 2 entries" in lines[1]
    assert "[2](Linear).w: shape (64, 8), spec P('model',): mesh axis 'model' does not " \
           "exist" in lines[2]
    assert "axis 0 of size 12 cannot be split into 8 equal parts" in done["odd_message"]


# ----- the rules, on one device ----------------------------------------------------------------
class MLP(bridge.Module):
    def __init__(self):
        self.layers = bridge.nn.Sequential([bridge.nn.Linear(4, 8), jax.nn.relu,
                                            bridge.nn.Linear(8, 2)])

    def __call__(self, x):
        return self.layers(x)


@pytest.fixture
def mesh():
    return Mesh(np.array(jax.devices()[:1]), ("data",))


def test_first_matching_rule_wins_and_the_rest_is_replicated():
    model = MLP()
    rules = bs.Rules([(r"\.w$", P(None, "data")), (r"\[0\]", P("data"))])
    assert rules.specs(model.vars()) == {
        "(MLP).layers(Sequential)[0](Linear).b": P("data"),
        "(MLP).layers(Sequential)[0](Linear).w": P(None, "data"),
        "(MLP).layers(Sequential)[2](Linear).b": P(),
        "(MLP).layers(Sequential)[2](Linear).w": P(None, "data"),
    }


def test_strict_rules_list_every_unmatched_name():
    model = MLP()
    with pytest.raises(bs.ShardingError) as e:
        bs.Rules([(r"\.w$", P())], strict=True).specs(model.vars())
    message = str(e.value)
    assert "(MLP).layers(Sequential)[0](Linear).b: shape (8,)" in message
    assert "(MLP).layers(Sequential)[2](Linear).b: shape (2,)" in message
    assert "(Linear).w" not in message


def test_bad_rules_are_listed_at_once():
    with pytest.raises(bs.ShardingError) as e:
        bs.Rules([("(", P()), ("w", "data"), ("only one",)])
    message = str(e.value)
    assert "rule 0 ('('): not a regular expression" in message
    assert "rule 1 ('w'): expected a PartitionSpec or a function of the shape, got str" in message
    assert "rule 2: expected a (pattern, PartitionSpec) pair" in message


def test_largest_axis():
    spec = bs.largest_axis("data", 8, min_size=64)
    assert spec((16, 64)) == P(None, "data")
    assert spec((64, 8)) == P("data")
    assert spec((8, 8)) == P(None, "data")       # ties: the last axis
    assert spec((12, 6)) == P()                  # 8 divides no axis
    assert spec((32,)) == P()                    # smaller than min_size
    assert spec(()) == P()


def test_shard_on_one_device_mesh_and_errors_change_nothing(mesh):
    model = MLP()
    w = model.layers[0].w.value
    with pytest.raises(bs.ShardingError, match=r"(?s)\[0\]\(Linear\)\.b: shape \(8,\), spec "
                       r"P\('data', None\).*\[2\]\(Linear\)\.w: shape \(8, 2\), spec "
                       r"P\('model',\): mesh axis 'model' does not exist"):
        bs.shard(model.vars(), mesh, bs.Rules([(r"\[0\].*\.b$", P("data", None)),
                                               (r"\[2\].*\.w$", P("model"))]))
    assert model.layers[0].w.value is w
    specs = bs.shard(model.vars(), mesh, bs.Rules([(r"\.w$", P(None, "data"))]))
    assert specs["(MLP).layers(Sequential)[0](Linear).w"] == P(None, "data")
    assert model.layers[0].w.value.sharding.spec == P(None, "data")
    np.testing.assert_array_equal(model.layers[0].w.value, w)


def test_a_dict_of_specs_must_name_every_variable(mesh):
    model = MLP()
    with pytest.raises(bs.ShardingError) as e:
        bs.shard(model.vars(), mesh, {"(MLP).layers(Sequential)[0](Linear).w": P(),
                                      "typo": P()})
    message = str(e.value)
    assert "(MLP).layers(Sequential)[2](Linear).w: shape (8, 2): no spec given" in message
    assert "typo: a spec is given but the collection has no such variable" in message


@pytest.mark.parametrize("make", [lambda vc: bridge.optimizer.Optax(vc, optax.adam(1e-3)),
                                  lambda vc: bridge.optimizer.Adam(vc)])
def test_follow_gives_optimizer_state_its_parameter_spec(mesh, make):
    model = MLP()
    opt = make(model.vars())
    specs = bs.Rules([(r"\.w$", P(None, "data"))]).specs(model.vars(), mesh)
    follow = bs.follow(opt, model.vars(), specs)
    assert sorted(follow) == sorted(opt.vars().keys())
    by_shape = {}
    for name, v in opt.vars().items():
        by_shape.setdefault(tuple(v.value.shape), set()).add(follow[name])
    assert by_shape[(4, 8)] == {P(None, "data")} and by_shape[(8, 2)] == {P(None, "data")}
    assert by_shape[(8,)] == {P()} and by_shape[()] == {P()}
    bs.shard(opt.vars(), mesh, follow)


def test_follow_explains_what_it_cannot_follow():
    with pytest.raises(TypeError, match="Rules over the names of their vars"):
        bs.follow(MLP(), bridge.VarCollection(), {})


def test_constrain_inside_jit_and_shard_inside_jit_refused(mesh):
    model = MLP()
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(0.1))
    specs = bs.shard(model.vars(), mesh, bs.Rules([(r"\.w$", P(None, "data"))]))
    gv = bridge.GradValues(lambda x: (model(x) ** 2).mean(), model.vars())

    def step(x):
        grads, values = gv(x)
        opt(grads)
        bs.constrain(model.vars(), mesh, specs)
        return values[0]

    step = bridge.Jit(step, model.vars() + opt.vars())
    assert np.isfinite(float(step(jnp.ones((3, 4)))))
    # one device: every layout is the same one; the 2 x 4 mesh of the worker checks more
    assert model.layers[2].w.value.sharding.is_equivalent_to(
        jax.sharding.NamedSharding(mesh, P(None, "data")), 2)
    bad = bridge.Jit(lambda: bs.shard(model.vars(), mesh, specs), model.vars())
    with pytest.raises(bs.ShardingError, match="runs outside Jit"):
        bad()


def test_bad_arguments_say_what_to_pass(mesh):
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        bs.shard(MLP().vars(), "mesh", {})
    with pytest.raises(TypeError, match=re.escape("a bridge.sharding.Rules or a dict")):
        bs.shard(MLP().vars(), mesh, [(r".*", P())])
