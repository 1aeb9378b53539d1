"""The name-rule engine alone (no Flax or Haiku): translations, rules, layouts, port."""

import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.interop import HAIKU_EMA_COUNTER, Layer, Leaf, Rule, port, translate
from bridge.nn import BatchNorm0D, BatchNorm2D, Conv2D, Linear, Sequential


class Block(bridge.Module):
    def __init__(self):
        self.proj = Linear(3, 3)
        self.norm = BatchNorm0D(3)


class Net(bridge.Module):
    def __init__(self):
        self.stem = Linear(2, 3)
        self.blocks = bridge.ModuleList([Block(), Block()])
        self.head = Sequential([Linear(3, 4), bridge.functional.relu, Linear(4, 1)])
        self.scale = bridge.TrainVar(jnp.ones(()))


def mlp():
    return Sequential([Linear(2, 4), bridge.functional.relu, Linear(4, 4),
                       bridge.functional.relu, Linear(4, 1)])


def test_setup_style_uses_attribute_names_and_layers_i():
    names = translate(Net().vars(), "linen", rules="setup")
    assert names["(Net).stem(Linear).w"] == "params/stem/kernel"
    assert names["(Net).blocks(ModuleList)[1](Block).proj(Linear).b"] == "params/blocks_1/proj/bias"
    assert names["(Net).blocks(ModuleList)[0](Block).norm(BatchNorm0D).running_mean"] == \
        "batch_stats/blocks_0/norm/mean"
    assert names["(Net).head(Sequential)[2](Linear).w"] == "params/head/layers_2/kernel"
    assert names["(Net).scale"] == "params/scale"


def test_setup_is_the_default_for_linen():
    assert translate(mlp().vars(), "linen") == translate(mlp().vars(), "linen", rules="setup")
    assert translate(mlp().vars(), "linen")["(Sequential)[4](Linear).w"] == "params/layers_4/kernel"


def test_compact_style_numbers_each_class_within_its_scope():
    names = translate(Net().vars(), "linen", rules="compact")
    assert names["(Net).stem(Linear).w"] == "params/Dense_0/kernel"
    assert names["(Net).blocks(ModuleList)[1](Block).proj(Linear).w"] == \
        "params/Block_1/Dense_0/kernel"
    assert names["(Net).blocks(ModuleList)[1](Block).norm(BatchNorm0D).gamma"] == \
        "params/Block_1/BatchNorm_0/scale"
    # the Sequential is transparent: its layers count in the parent's scope
    assert names["(Net).head(Sequential)[0](Linear).w"] == "params/Dense_1/kernel"
    assert names["(Net).head(Sequential)[2](Linear).w"] == "params/Dense_2/kernel"


def test_nnx_paths_keep_list_indices_as_parts():
    names = translate(Net().vars(), "nnx")
    assert names["(Net).blocks(ModuleList)[1](Block).proj(Linear).w"] == "blocks/1/proj/kernel"
    assert names["(Net).head(Sequential)[2](Linear).b"] == "head/layers/2/bias"
    assert translate(mlp().vars(), "nnx")["(Sequential)[0](Linear).w"] == "layers/0/kernel"


def test_haiku_names_follow_haikus_automatic_naming():
    names = translate(Net().vars(), "haiku")
    assert names["(Net).stem(Linear).w"] == "params/linear/w"
    assert names["(Net).head(Sequential)[2](Linear).w"] == "params/linear_2/w"
    assert names["(Net).blocks(ModuleList)[1](Block).proj(Linear).b"] == "params/block_1/~/linear/b"
    assert names["(Net).blocks(ModuleList)[0](Block).norm(BatchNorm0D).beta"] == \
        "params/block/~/batch_norm/offset"
    assert names["(Net).blocks(ModuleList)[0](Block).norm(BatchNorm0D).running_var"] == \
        "state/block/~/batch_norm/~/var_ema/average"
    assert names["(Net).scale"] == "params/~/scale"


def test_mlp_preset_names_top_level_linears_like_hk_nets_mlp():
    names = translate(mlp().vars(), "haiku", rules="mlp")
    assert [names[f"(Sequential)[{i}](Linear).w"] for i in (0, 2, 4)] == \
        ["params/mlp/~/linear_0/w", "params/mlp/~/linear_1/w", "params/mlp/~/linear_2/w"]


def test_a_root_layer_is_named_after_itself():
    assert translate(Linear(2, 3).vars(), "linen") == {"(Linear).b": "params/bias",
                                                       "(Linear).w": "params/kernel"}
    assert translate(Linear(2, 3).vars(), "haiku")["(Linear).w"] == "params/linear/w"


def test_wrapper_variables_keep_their_library_names_under_any_scope():
    w = bridge.TrainVar(jnp.ones(2))
    vc = bridge.VarCollection({
        "(FlaxModule).params/Dense_0/kernel": w,
        "(Net).enc(FlaxModule).batch_stats/BatchNorm_0/mean": bridge.StateVar(jnp.ones(2)),
        "(HaikuModule).params/mlp/~/linear_0/w": bridge.TrainVar(jnp.ones(2)),
        "(Net).dec(HaikuModule).state/batch_norm/~/mean_ema/average": bridge.StateVar(jnp.ones(2)),
        "(NNXModule).layers/0/kernel": bridge.TrainVar(jnp.ones(2)),
    })
    linen = translate(vc, "linen")
    assert linen["(FlaxModule).params/Dense_0/kernel"] == "params/Dense_0/kernel"
    assert linen["(Net).enc(FlaxModule).batch_stats/BatchNorm_0/mean"] == \
        "batch_stats/enc/BatchNorm_0/mean"
    assert linen["(HaikuModule).params/mlp/~/linear_0/w"] == "params/Dense_0/kernel"
    haiku = translate(vc, "haiku")
    assert haiku["(HaikuModule).params/mlp/~/linear_0/w"] == "params/mlp/~/linear_0/w"
    assert haiku["(Net).dec(HaikuModule).state/batch_norm/~/mean_ema/average"] == \
        "state/dec/~/batch_norm/~/mean_ema/average"
    assert translate(vc, "nnx")["(NNXModule).layers/0/kernel"] == "layers/0/kernel"


def test_user_rule_takes_precedence_and_fills_placeholders():
    rules = [Rule("(Sequential)[{i}](Linear).w", "params/fc{i}/weight")]
    names = translate(mlp().vars(), "linen", rules=rules)
    assert names["(Sequential)[2](Linear).w"] == "params/fc2/weight"
    assert names["(Sequential)[2](Linear).b"] == "params/layers_2/bias"


def test_rule_with_no_target_drops_the_variable():
    names = translate(Net().vars(), "linen", rules=[Rule("{p*}.scale", None)])
    assert "(Net).scale" not in names and len(names) > 1


def test_rule_that_matches_nothing_is_an_error_naming_the_nearest_names():
    nearest = r"nearest: '\(Sequential\)\[0\]\(Linear\)\.w'"
    with pytest.raises(ValueError, match=r"(?s)matched no name.*" + nearest):
        translate(mlp().vars(), "linen", rules=[Rule("(Sequential)[0](Linear).W", "params/x")])


def test_rule_target_with_unknown_placeholder_is_refused():
    with pytest.raises(ValueError, match="placeholders not in the source.*k"):
        Rule("{p*}.w", "params/{k}")


def test_unknown_preset_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="Unknown rule 'compakt'.*'setup', 'compact', 'mlp'"):
        translate(mlp().vars(), "linen", rules="compakt")


def test_user_layer_renames_a_custom_layers_leaves_in_every_scheme():
    class MyDense(bridge.Module):
        def __init__(self):
            self.weight = bridge.TrainVar(jnp.ones((2, 3)))

    layer = Layer(("MyDense",), "Dense", "linear", (Leaf("weight", "params/kernel", "params/w"),))
    vc = Sequential([MyDense(), MyDense()]).vars()
    assert translate(vc, "linen", rules=["compact", layer])["(Sequential)[1](MyDense).weight"] == \
        "params/Dense_1/kernel"
    assert translate(vc, "haiku", rules=[layer])["(Sequential)[1](MyDense).weight"] == \
        "params/linear_1/w"


def test_unparseable_variable_name_asks_for_a_rule():
    vc = bridge.VarCollection({"loose": bridge.TrainVar(jnp.ones(2))})
    with pytest.raises(ValueError, match="'loose' is not a module variable name.*Rule"):
        translate(vc, "linen")
    named = translate(vc, "linen", rules=[Rule("loose", "params/loose")])
    assert named == {"loose": "params/loose"}


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown scheme 'torch'"):
        translate(mlp().vars(), "torch")


# ----- port on plain dict trees -------------------------------------------------------------
def linen_tree():
    return {
        "params": {"Conv_0": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.arange(4.0)},
                   "BatchNorm_0": {"scale": jnp.arange(4.0) + 1, "bias": jnp.arange(4.0) + 2},
                   "Dense_0": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}},
        "batch_stats": {"BatchNorm_0": {"mean": jnp.arange(4.0) + 3, "var": jnp.arange(4.0) + 4}},
    }


def test_port_linen_to_haiku_renames_and_moves_the_channel_last():
    params, state = port(linen_tree(), "linen", "haiku")
    assert sorted(params) == ["batch_norm", "conv2_d", "linear"]
    assert params["conv2_d"]["w"] is linen_tree()["params"]["Conv_0"]["kernel"] or \
        params["conv2_d"]["w"].shape == (3, 3, 2, 4)
    assert params["batch_norm"]["offset"].shape == (1, 1, 1, 4)
    np.testing.assert_array_equal(params["batch_norm"]["offset"].ravel(), np.arange(4.0) + 2)
    ema = state["batch_norm/~/mean_ema"]
    np.testing.assert_array_equal(ema["average"].ravel(), np.arange(4.0) + 3)
    assert ema["hidden"] is ema["average"]
    assert ema["counter"].dtype == jnp.int32 and int(ema["counter"]) == HAIKU_EMA_COUNTER


def test_port_keeps_renamed_arrays_themselves():
    tree = linen_tree()
    params, _ = port(tree, "linen", "haiku")
    assert params["conv2_d"]["w"] is tree["params"]["Conv_0"]["kernel"]
    assert params["linear"]["b"] is tree["params"]["Dense_0"]["bias"]


def test_port_haiku_to_linen_consumes_ema_hidden_and_counter():
    variables = port(port(linen_tree(), "linen", "haiku"), "haiku", "linen")
    assert sorted(variables["batch_stats"]["BatchNorm_0"]) == ["mean", "var"]
    assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (4,)


def test_port_like_gives_the_rank_of_haiku_batchnorm_shapes():
    tree = {"params": {"BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.zeros(3)}}}
    like = ({"batch_norm": {"scale": jnp.zeros((1, 3)), "offset": jnp.zeros((1, 3))}}, {})
    params, _ = port(tree, "linen", "haiku", like=like)
    assert params["batch_norm"]["scale"].shape == (1, 3)


def test_port_like_lists_every_problem_at_once():
    like = ({"linear": {"w": jnp.zeros((4, 3)), "b": jnp.zeros(2, jnp.int32)},
             "extra": {"w": jnp.zeros(1)}}, {})
    tree = {"params": {"Dense_0": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)},
                       "Dense_1": {"kernel": jnp.ones((2, 2))}}}
    with pytest.raises(ValueError) as info:
        port(tree, "linen", "haiku", like=like)
    msg = str(info.value)
    assert "missing: params/extra/w" in msg
    assert "unexpected: params/linear_1/w (from params/Dense_1/kernel)" in msg
    assert "params/linear/w (from params/Dense_0/kernel): expected shape (4, 3), got (4, 2)" in msg
    assert "params/linear/b (from params/Dense_0/bias): expected dtype int32, got float32" in msg


def test_port_user_rule_renames_a_named_module():
    tree = ({"head": {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}}, {})
    rules = [Rule("params/head/w", "params/Dense_3/kernel"),
             Rule("params/head/b", "params/Dense_3/bias")]
    variables = port(tree, "haiku", "linen", rules=rules)
    assert variables["params"]["Dense_3"]["kernel"] is tree[0]["head"]["w"]


def test_port_two_sources_on_one_target_is_an_error():
    tree = ({"linear": {"w": jnp.ones(1)}, "mlp/~/linear_0": {"w": jnp.ones(1)}}, {})
    with pytest.raises(ValueError, match="duplicate: params/Dense_0/kernel"):
        port(tree, "haiku", "linen", rules="mlp")


def test_port_of_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown scheme 'objax'"):
        port({}, "objax", "linen")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32, jnp.bool_,
                                   jnp.complex64])
def test_port_round_trip_linen_haiku_linen_is_exact(dtype):
    tree = {"params": {"Dense_0": {"kernel": (jnp.arange(6).reshape(2, 3) % 2).astype(dtype)},
                       "BatchNorm_0": {"scale": (jnp.arange(3) % 2).astype(dtype)}},
            "batch_stats": {"BatchNorm_0": {"mean": (jnp.arange(3) % 2).astype(dtype)}}}
    back = port(port(tree, "linen", "haiku"), "haiku", "linen")
    for coll in tree:
        for mod in tree[coll]:
            for leaf, value in tree[coll][mod].items():
                got = back[coll][mod][leaf]
                assert got.dtype == value.dtype and got.shape == value.shape
                np.testing.assert_array_equal(np.asarray(got), np.asarray(value))


def test_setup_and_compact_differ_only_in_module_names():
    vc = Sequential([Conv2D(1, 2, 1), BatchNorm2D(2)]).vars()
    setup, compact = translate(vc, "linen"), translate(vc, "linen", rules="compact")
    assert setup["(Sequential)[1](BatchNorm2D).running_mean"] == "batch_stats/layers_1/mean"
    assert compact["(Sequential)[1](BatchNorm2D).running_mean"] == "batch_stats/BatchNorm_0/mean"
