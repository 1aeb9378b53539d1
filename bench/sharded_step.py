"""One training step with weights and optimizer state sharded over 8 devices, against the
same step on one device, on the same total batch.

The step: MLP ``--width`` wide (in -> width -> width -> in, ReLU), batch ``--batch``, mean
squared error, ``optax.adam(1e-3)``, as ``bridge.Jit(step, model.vars() + opt.vars())``.

Variants (each keeps its own model and optimizer, built from the same seed):

* ``1 device``: nothing sharded, everything on device 0 (the baseline);
* ``FSDP x8``: ``bridge.sharding`` rule ``largest_axis("data", 8)`` on every variable, the
  batch split over ``'data'`` too;
* ``Megatron x8``: first kernels split by columns, second by rows over ``'model'``, the
  batch replicated.

The 8 devices are forced CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``,
set by this script before JAX is imported): they share this machine's cores, so the
figure measures the partitioned program's overhead (collectives, smaller kernels,
dispatch to 8 devices), not a speed-up. On a machine with 8 real accelerators the same
script measures the scaling.

Timing is interleaved: each round runs ``--steps`` steps of every variant in turn (the
order rotates), every step blocks on its loss, and the table gives the median over rounds
of the mean time per step, with the 25-75 percentiles and the ratio to ``1 device``.

Usage::

    python bench/sharded_step.py                     # 15 rounds x 20 steps
    python bench/sharded_step.py --rounds 5 --steps 10 --width 512
"""

from __future__ import annotations

import os
import sys

# The forced devices exist only if the flag is set before JAX starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import time  # noqa: E402
from typing import Optional  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P

import bridge  # noqa: E402
import bridge.sharding as bs  # noqa: E402
from bench import _harness as H  # noqa: E402

D_IN = 128


class MLP(bridge.Module):
    def __init__(self, width: int):
        self.layers = bridge.nn.Sequential([
            bridge.nn.Linear(D_IN, width), jax.nn.relu,
            bridge.nn.Linear(width, width), jax.nn.relu,
            bridge.nn.Linear(width, D_IN)])

    def __call__(self, x):
        return self.layers(x)


MEGATRON = bs.Rules([
    (r"\[0\]\(Linear\)\.w$", P(None, "model")), (r"\[0\]\(Linear\)\.b$", P("model")),
    (r"\[2\]\(Linear\)\.w$", P("model", None)),
    (r"\[4\]\(Linear\)\.w$", P(None, "model")), (r"\[4\]\(Linear\)\.b$", P("model")),
])  # layers 0 and 2: a Megatron pair (columns, then rows); layer 4 by columns; rest replicated


def build(kind: str, width: int, x: np.ndarray, y: np.ndarray):
    """(step, x, y) for one variant, after one warm-up (compiling) call."""
    bridge.random.DEFAULT_GENERATOR.seed(0)
    model = MLP(width)
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(1e-3))
    devices = np.array(jax.devices())
    if kind == "FSDP x8":
        mesh = Mesh(devices, ("data",))
        specs = bs.shard(model.vars(), mesh, bs.Rules([(r".*", bs.largest_axis("data", 8))]))
        bs.shard(opt.vars(), mesh, bs.follow(opt, model.vars(), specs))
        x, y = (jax.device_put(a, NamedSharding(mesh, P("data"))) for a in (x, y))
    elif kind == "Megatron x8":
        mesh = Mesh(devices, ("model",))
        specs = bs.shard(model.vars(), mesh, MEGATRON)
        bs.shard(opt.vars(), mesh, bs.follow(opt, model.vars(), specs))
        x, y = (jax.device_put(a, NamedSharding(mesh, P())) for a in (x, y))
    else:
        x, y = jax.device_put(x, devices[0]), jax.device_put(y, devices[0])
    gv = bridge.GradValues(lambda x, y: ((model(x) - y) ** 2).mean(), model.vars())

    def step(x, y):
        grads, values = gv(x, y)
        opt(grads)
        return values[0]

    step = bridge.Jit(step, model.vars() + opt.vars())
    step(x, y).block_until_ready()
    w = model.layers[2].w.value
    return step, x, y, len(w.addressable_shards[0].data.reshape(-1)) / w.size


def measure(rounds: int, steps: int, width: int, batch: int) -> H.Section:
    """Needs the 8 devices: run in a process that imported this module first."""
    rng = np.random.RandomState(0)
    x = rng.randn(batch, D_IN).astype(np.float32)
    y = rng.randn(batch, D_IN).astype(np.float32)
    kinds = ["1 device", "FSDP x8", "Megatron x8"]
    built = {k: build(k, width, x, y) for k in kinds}
    variants = {k: (lambda s=built[k]: s[0](s[1], s[2])) for k in kinds}
    times = H.interleave(variants, rounds, steps)
    table = H.Table(f"one step, MLP {D_IN}-{width}-{width}-{D_IN}, batch {batch} (total), "
                    f"Adam, bridge.Jit", "ms", what="per step")
    for k in kinds:
        table.add(k, times[k], None if k == "1 device" else "1 device",
                  note=f"weight/device {built[k][3]:.3f}")
    command = "python bench/sharded_step.py" + ("" if (rounds, steps, width, batch) == (
        15, 20, 1024, 256) else f" --rounds {rounds} --steps {steps} --width {width} "
        f"--batch {batch}")
    section = H.Section("sharded_step", "One step sharded over 8 forced CPU devices", command,
                        f"{rounds} interleaved rounds x {steps} steps per variant; "
                        f"{jax.device_count()} {jax.default_backend()} devices",
                        tables=[table])
    section.notes.append("weight/device (fraction of the middle kernel on each device): " +
                         ", ".join(f"{k} {built[k][3]:.3f}" for k in kinds))
    section.notes.append("the 8 devices are forced CPU devices sharing this machine's cores: "
                         "the ratio is the cost of the partitioned program, not a speed-up")
    return section


def bench(quick: bool = False, out_dir: Optional[str] = None) -> H.Section:
    """For ``python -m bench``: runs this script in a subprocess (the forced devices must
    be set before JAX starts) and reads its section back."""
    import json
    import subprocess
    import tempfile

    start = time.perf_counter()
    args = ["--rounds", "3", "--steps", "5", "--width", "256"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "section.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), *args, "--json", path],
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            section = H.section_from_dict(json.load(f))
    section.seconds = time.perf_counter() - start
    return section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args()
    print(H.header())
    print(f"step: MLP {D_IN}-{args.width}-{args.width}-{D_IN} ReLU, batch {args.batch} "
          f"(total), MSE, optax.adam, bridge.Jit")
    section = measure(args.rounds, args.steps, args.width, args.batch)
    H.print_section(section)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(H.section_to_dict(section), f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
