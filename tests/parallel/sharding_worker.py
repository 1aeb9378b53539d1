"""Run by ``test_sharding.py`` in its own process, with 8 host CPU devices.

Trains the same MLP (three ``optax.adam`` steps) once on one device and once with its
weights and optimizer state sharded by ``bridge.sharding`` rules: FSDP over a ``'data'``
axis of 8, tensor parallelism (Megatron-style) over a ``'model'`` axis of 8, and both on a
2 x 4 mesh with ``constrain`` in the step. Then checks checkpoints and bad specs, and prints
every result as one JSON line on stdout.
"""

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import bridge
import bridge.checkpoint as ckpt
import bridge.sharding as bs

STEPS = 3
D_IN, HIDDEN, D_OUT, BATCH = 16, 64, 8, 32


class MLP(bridge.Module):
    def __init__(self):
        self.layers = bridge.nn.Sequential([bridge.nn.Linear(D_IN, HIDDEN), jax.nn.relu,
                                            bridge.nn.Linear(HIDDEN, D_OUT)])

    def __call__(self, x):
        return self.layers(x)


MEGATRON = [
    (r"\[0\]\(Linear\)\.w$", P(None, "model")),   # (in, hidden): columns
    (r"\[0\]\(Linear\)\.b$", P("model")),
    (r"\[2\]\(Linear\)\.w$", P("model", None)),   # (hidden, out): rows
]                                                 # the last bias: replicated


def data():
    rng = np.random.RandomState(0)
    x = rng.randn(BATCH, D_IN).astype(np.float32)
    y = (x @ rng.randn(D_IN, D_OUT)).astype(np.float32)
    return x, y


def layout(vc):
    """{name: [spec as a list, global shape, sorted shard shapes, devices]}."""
    out = {}
    for name, v in vc.items():
        value = v.value
        out[name] = {"spec": [None if e is None else e for e in value.sharding.spec]
                     if isinstance(value.sharding, NamedSharding) else "single",
                     "shape": list(value.shape),
                     "shards": sorted(list(s.data.shape) for s in value.addressable_shards),
                     "devices": len(value.sharding.device_set)}
    return out


def kept(vc, mesh, specs):
    """Names whose value is not laid out as ``specs`` says."""
    return [name for name, v in vc.items() if name in specs and not v.value.sharding
            .is_equivalent_to(NamedSharding(mesh, specs[name]), v.value.ndim)]


def train(mesh=None, rules=None, batch_spec=None, use_constrain=False):
    """Fresh model (seed 0) and Adam; sharded by ``rules`` when given; STEPS steps."""
    bridge.random.DEFAULT_GENERATOR.seed(0)
    model = MLP()
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(1e-2))
    x, y = data()
    specs = {}
    if rules is not None:
        specs = bs.shard(model.vars(), mesh, rules)
        specs.update(bs.shard(opt.vars(), mesh, bs.follow(opt, model.vars(), specs)))
        batch = NamedSharding(mesh, batch_spec or P())
        x, y = jax.device_put(x, batch), jax.device_put(y, batch)
    gv = bridge.GradValues(lambda x, y: ((model(x) - y) ** 2).mean(), model.vars())
    every = model.vars() + opt.vars()

    def step(x, y):
        grads, values = gv(x, y)
        opt(grads)
        if use_constrain:
            bs.constrain(every, mesh, specs)
        return values[0]

    step = bridge.Jit(step, every)
    result = {"layout_before": layout(every) if rules is not None else None}
    result["losses"] = [float(step(x, y)) for _ in range(STEPS)]
    result["variables"] = {k: np.asarray(v.value).tolist() for k, v in every.items()}
    if rules is not None:
        result["layout_after"] = layout(every)
        result["not_kept"] = kept(every, mesh, specs)
        result["specs"] = {k: [e for e in s] for k, s in specs.items()}
    return result, model, opt, mesh, specs


def checkpoints(model, opt, mesh, specs):
    every = model.vars() + opt.vars()
    before = {k: np.asarray(v.value) for k, v in every.items()}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for fmt in ("msgpack", "npz"):
            path = os.path.join(d, f"model.{fmt}")
            ckpt.save(path, every, step=3)
            every.assign([jax.device_put(np.zeros(v.shape, v.dtype), v.sharding)
                          for v in every.tensors()])               # placed as before
            placed = kept(every, mesh, specs)
            report = ckpt.restore(path, every)
            out[fmt] = {
                "step": report.step,
                "equal": all(np.array_equal(np.asarray(v.value), before[k])
                             for k, v in every.items()),
                "not_kept": kept(every, mesh, specs),
                "not_placed_before": placed,
            }
    # from_tree with host arrays on one device (what a gather gives): the layout stays
    tree = {k: jnp.asarray(np.asarray(v)) for k, v in ckpt.to_tree(every).items()}
    single = all(len(v.sharding.device_set) == 1 for v in tree.values())
    ckpt.from_tree(every, tree)
    out["from_tree"] = {"inputs_on_one_device": single, "not_kept": kept(every, mesh, specs),
                        "equal": all(np.array_equal(np.asarray(v.value), before[k])
                                     for k, v in every.items())}
    # a typed key array, replicated over the mesh, restores replicated
    keys = bridge.StateVar(jax.random.key(0))
    kvc = bridge.VarCollection({"key": keys})
    bs.shard(kvc, mesh, {"key": P()})
    with tempfile.TemporaryDirectory() as d:
        ckpt.save(os.path.join(d, "k.msgpack"), kvc)
        keys.value = jax.device_put(jax.random.key(1), NamedSharding(mesh, P()))
        ckpt.restore(os.path.join(d, "k.msgpack"), kvc)
    out["key"] = {"devices": len(keys.value.sharding.device_set),
                  "equal": bool(np.array_equal(jax.random.key_data(keys.value),
                                               jax.random.key_data(jax.random.key(0))))}
    return out


def bad_specs():
    bridge.random.DEFAULT_GENERATOR.seed(0)
    model = MLP()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    before = {k: v.value.sharding for k, v in model.vars().items()}
    rules = bs.Rules([
        (r"\[0\]\(Linear\)\.w$", P("data", None)),   # 16 rows into 8: fits
        (r"\[0\]\(Linear\)\.b$", P(None, "data")),   # rank 1 with two entries
        (r"\[2\]\(Linear\)\.w$", P("model")),        # no such mesh axis
        (r"\[2\]\(Linear\)\.b$", P(("data",))),      # 8 into 8: fits
    ])
    message = ""
    try:
        bs.shard(model.vars(), mesh, rules)
    except bs.ShardingError as e:
        message = str(e)
    odd = bridge.VarCollection({"odd": bridge.TrainVar(jnp.zeros((12, 3)))})
    odd_message = ""
    try:
        bs.shard(odd, mesh, bs.Rules([(r".*", P("data"))]))
    except bs.ShardingError as e:
        odd_message = str(e)
    return {"message": message, "odd_message": odd_message,
            "unchanged": all(v.value.sharding == before[k] for k, v in model.vars().items())}


def main():
    devices = np.array(jax.devices())
    one, *_ = train()
    fsdp_mesh = Mesh(devices, ("data",))
    fsdp, model, opt, mesh, specs = train(
        fsdp_mesh, bs.Rules([(r".*", bs.largest_axis("data", 8))]), batch_spec=P("data"))
    tp, *_ = train(Mesh(devices, ("model",)), bs.Rules(MEGATRON))
    both, *_ = train(Mesh(devices.reshape(2, 4), ("data", "model")), bs.Rules(MEGATRON),
                     batch_spec=P("data"), use_constrain=True)
    print(json.dumps({"devices": jax.device_count(), "one_device": one, "fsdp": fsdp,
                      "tensor_parallel": tp, "data_x_model": both,
                      "checkpoints": checkpoints(model, opt, mesh, specs),
                      "bad_specs": bad_specs()}))


if __name__ == "__main__":
    main()
