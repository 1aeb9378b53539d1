"""The error catalogue, docs/errors.md: one test per row, named after the row's id.

Each test triggers its error inside ``expect(...)``, which reads the row of the current test
from the page and checks that (1) something raised, (2) the exception's class is the one the
page names and its message contains every excerpt the page shows, and (3) nothing changed:
the variables of every object handed to ``expect``, the default random generator, and any
file or directory handed to it hold what they held before.

The meta tests at the end keep the page and this module in step: every row has a test,
every test a row, and every exception class defined in bridge appears on the page.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import functools
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge
from bridge import functional as F
from bridge import nn, util, zoo
from bridge.privacy import dpsgd
from bridge.state._access import current

PAGE = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ID = re.compile(r"E-[A-Z]+-\d{2}")
_ROW = re.compile(r"^\|\s*(E-[A-Z]+-\d+)\s*\|(.*)\|\s*$")
_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_TEST = re.compile(r"^test_(E_[A-Z]+_\d{2})_\w+$")


# ----- reading the page ------------------------------------------------------------------

def _code_spans(cell: str) -> list[str]:
    spans = []
    for match in _CODE.finditer(cell):
        text = match.group(2)
        if len(text) > 2 and text.startswith(" ") and text.endswith(" "):
            text = text[1:-1]  # ``  `a`  `` shows `a`: one space each side is padding
        spans.append(text)
    return spans


@functools.cache
def catalogue() -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{id: (exception class as written, message excerpts)}`` for every row of the page."""
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line.strip())
        if not match:
            continue
        row_id, cells = match.group(1), [c.strip() for c in match.group(2).split("|")]
        assert ID.fullmatch(row_id), f"malformed id {row_id!r}"
        assert len(cells) == 3, f"{row_id}: expected Raises, Trigger and Message cells: {line}"
        assert row_id not in rows, f"{row_id} appears twice on the page"
        classes, excerpts = _code_spans(cells[0]), _code_spans(cells[2])
        assert len(classes) == 1, f"{row_id}: the Raises cell must hold one `Class`"
        assert excerpts, f"{row_id}: the Message cell holds no `excerpt`"
        rows[row_id] = (classes[0], tuple(excerpts))
    return rows


def resolve(name: str) -> type:
    """The class a page entry such as ``bridge.facades.BatchAxisError`` names."""
    parts = name.split(".")
    if len(parts) == 1:
        return getattr(builtins, name)
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(name)


def row_of(test_name: str) -> str:
    match = _TEST.match(test_name.split("[")[0])
    assert match, f"{test_name} is not named after a catalogue id (test_E_AREA_NN_...)"
    return match.group(1).replace("_", "-")


def check_error(row_id: str, error: BaseException) -> None:
    assert row_id in catalogue(), f"{row_id} has no row in {PAGE.name}"
    name, excerpts = catalogue()[row_id]
    assert type(error) is resolve(name), (
        f"{row_id}: raised {type(error).__module__}.{type(error).__qualname__}, the page says "
        f"{name}: {error}")
    message = str(error)
    for excerpt in excerpts:
        assert excerpt in message, f"{row_id}: {excerpt!r} is not in the message:\n{message}"


# ----- "nothing changed" ------------------------------------------------------------------

def _array(v: bridge.BaseVar) -> tuple:
    value = np.asarray(current(v))
    return str(value.dtype), value.shape, value.tobytes()


def _state(obj) -> object:
    """What must not change: a variable's array, every variable (by name) of a module or a
    collection, a file's bytes, a directory's files."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.is_dir():
            return {str(p.relative_to(path)): p.read_bytes()
                    for p in sorted(path.rglob("*")) if p.is_file()}
        return path.read_bytes() if path.exists() else None
    if isinstance(obj, bridge.BaseVar):
        return _array(obj)
    if isinstance(obj, bridge.Module):
        obj = obj.vars()
    if isinstance(obj, Mapping):
        return {name: _array(v) for name, v in obj.items()}
    raise TypeError(f"expect() cannot watch {type(obj).__name__}")


class Changed(AssertionError):
    """The operation raised as the page says, but changed what it was given."""


@pytest.fixture
def expect(request):
    """``with expect(*watched): trigger()`` (see the module docstring)."""
    row_id = row_of(request.node.name)

    @contextlib.contextmanager
    def check(*watched):
        watched = (*watched, bridge.random.DEFAULT_GENERATOR)
        before = [_state(w) for w in watched]
        with pytest.raises(Exception) as info:
            yield info
        check_error(row_id, info.value)
        for w, old in zip(watched, before):
            if _state(w) != old:
                raise Changed(f"{row_id}: {w!r} changed")

    return check


# ----- small objects ------------------------------------------------------------------------

def linear(nin: int = 3, nout: int = 2) -> nn.Linear:
    return nn.Linear(nin, nout)


class Caching(bridge.Module):
    """Creates a variable while it is traced (the mistake behind ExpiredValueError)."""

    def __init__(self):
        self.w = bridge.TrainVar(jnp.ones(3))

    def __call__(self, x):
        self.cache = bridge.StateVar(self.w.value * x)
        return (self.w.value * x).sum()


class Warmup(bridge.optimizer.scheduler.Scheduler):
    """A scheduler that forgot to define ``multiplier``."""


def layer(name: str, **arrays) -> types.SimpleNamespace:
    """A stand-in for a Keras layer: a name and weight arrays."""
    return types.SimpleNamespace(name=name, **{k: np.asarray(a) for k, a in arrays.items()})


def resnet_block(bottleneck: bool) -> zoo.resnet_v2.ResNetV2Block:
    return zoo.resnet_v2.ResNetV2Block(4, 4, 1, use_projection=False, bottleneck=bottleneck)


@contextlib.contextmanager
def missing_module(*names: str):
    """Make ``import name`` fail, as when an optional dependency is not installed."""
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = None  # type: ignore[assignment]
        yield
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


# ===== State and variables ================================================================

def test_E_STATE_01_assigning_the_wrong_shape(expect):
    v = bridge.StateVar(jnp.zeros(3))
    with expect(v):
        v.assign(jnp.zeros(2))


def test_E_STATE_02_assigning_a_float64_numpy_array_to_a_float32_variable(expect):
    v = bridge.StateVar(jnp.zeros(3))
    with expect(v):
        v.assign(np.zeros(3))


def test_E_STATE_03_assigning_a_python_float_to_an_int_variable(expect):
    v = bridge.StateVar(jnp.zeros(3, jnp.int32))
    with expect(v):
        v.assign(1.5)


def test_E_STATE_04_assigning_something_that_is_not_an_array(expect):
    v = bridge.StateVar(jnp.zeros(3))
    with expect(v):
        v.assign("zeros")


def test_E_STATE_05_assigning_a_tracer_outside_every_bridge_transformation(expect):
    v = bridge.StateVar(jnp.zeros(2))

    def leak(x):
        v.assign(x)
        return x

    with expect(v):
        jax.jit(leak)(jnp.ones(2))


def test_E_STATE_06_direct_assignment_to_a_train_var(expect):
    w = bridge.TrainVar(jnp.zeros(3))
    with expect(w):
        w.value = jnp.ones(3)


def test_E_STATE_07_collection_assign_with_the_wrong_number_of_tensors(expect):
    model = linear(2, 1)
    with expect(model):
        model.vars().assign([jnp.zeros((2, 1))])


def test_E_STATE_08_collection_assign_lists_every_tensor_that_does_not_fit(expect):
    model = linear(2, 1)
    with expect(model):
        model.vars().assign([jnp.zeros(3), jnp.zeros((2, 1), jnp.int32)])


def test_E_STATE_09_a_collection_entry_that_is_not_a_variable(expect):
    ok = bridge.StateVar(jnp.zeros(1))
    with expect(ok):
        bridge.VarCollection({"y": 3, "ok": ok})
    vc = bridge.VarCollection({"a": bridge.StateVar(jnp.ones(2))})
    with expect(vc):  # an update adds nothing, not even the entries that are variables
        vc.update({"ok": ok, "y": 3})
    assert list(vc.keys()) == ["a"]


def test_E_STATE_10_a_collection_name_that_is_not_a_string(expect):
    v = bridge.StateVar(jnp.zeros(1))
    with expect(v):
        bridge.VarCollection({1: v})


def test_E_STATE_11_merging_collections_with_a_name_conflict(expect):
    a = bridge.VarCollection({"a": bridge.StateVar(jnp.zeros(1))})
    b = bridge.VarCollection({"a": bridge.StateVar(jnp.ones(1))})
    with expect(a, b):
        a.update(b)
    assert a["a"] is not b["a"]


def test_E_STATE_12_reading_an_undeclared_variable_inside_jit(expect):
    model, other = linear(), bridge.StateVar(jnp.zeros(2))
    with expect(model, other):
        bridge.Jit(lambda x: model(x) + other.value, model.vars())(jnp.ones((1, 3)))


def test_E_STATE_13_assigning_an_undeclared_variable_inside_jit(expect):
    model, other = linear(), bridge.StateVar(jnp.zeros(2))

    def step(x):
        other.assign(jnp.ones(2))
        return model(x)

    with expect(model, other):
        bridge.Jit(step, model.vars())(jnp.ones((1, 3)))


def test_E_STATE_14_one_write_of_several_undeclared_variables(expect):
    model = linear()
    a, b = bridge.StateVar(jnp.zeros(1)), bridge.StateVar(jnp.zeros(2))
    counters = bridge.VarCollection({"a": a, "b": b})

    def loss(x):
        counters.assign([a.value + 1, b.value + 1])
        return model(x).sum()

    with expect(model, counters) as info:
        bridge.GradValues(loss, model.vars())(jnp.ones((1, 3)))
    assert str(info.value).count("StateVar <unnamed") == 2  # both are named


def test_E_STATE_15_using_a_variable_created_while_tracing(expect):
    m = Caching()
    bridge.Jit(m)(jnp.ones(3))
    with expect(m.w):
        m.cache.value + 1  # noqa: B018


def test_E_STATE_16_a_variable_used_as_a_python_bool(expect):
    v = bridge.StateVar(jnp.zeros(2))
    with expect(v):
        bool(v)


def test_E_STATE_17_an_attribute_neither_the_variable_nor_its_array_has(expect):
    v = bridge.StateVar(jnp.zeros(2))
    with expect(v):
        v.foo  # noqa: B018


def test_E_STATE_18_train_ref_to_something_other_than_a_train_var(expect):
    s = bridge.StateVar(jnp.zeros(2))
    with expect(s):
        bridge.TrainRef(s)


def test_E_STATE_19_replicate_inside_a_transformation(expect):
    model = linear()

    def step():
        with model.vars().replicate():
            pass
        return 0

    with expect(model):
        bridge.Jit(step, model.vars())()


def test_E_STATE_20_replicating_variables_that_are_already_replicated(expect):
    model = linear()
    with model.vars().replicate():
        inside = _state(model)
        with pytest.raises(ValueError) as info:
            with model.vars().replicate():
                pass
        assert _state(model) == inside  # the outer copies are untouched
    check_error("E-STATE-20", info.value)
    with expect(model):  # and once more, from outside, against the page
        with model.vars().replicate():
            with model.vars().replicate():
                pass


def test_E_STATE_21_a_reduce_that_fails_when_replicate_ends(expect):
    s = bridge.StateVar(jnp.arange(3.0), reduce=lambda stacked: stacked)
    ok = bridge.StateVar(jnp.ones(2))
    vc = bridge.VarCollection({"s": s, "ok": ok})
    with expect(vc):
        with vc.replicate():
            pass


def test_E_STATE_22_finding_the_variables_of_a_module(expect):
    model = linear()
    with expect(model):
        util.find_used_variables(model)


def test_E_STATE_23_finding_the_variables_of_a_partial(expect):
    with expect():
        bridge.Function.auto_vars(functools.partial(lambda x, y: x, 1))


def test_E_STATE_24_finding_the_variables_of_a_function_defined_with_exec(expect):
    namespace: dict = {}
    exec("def f():\n    return 1\n", namespace)
    with expect():
        util.find_used_variables(namespace["f"])


def _import_file(path: Path, source: str) -> types.ModuleType:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_E_STATE_25_finding_the_variables_of_a_function_whose_file_changed(expect, tmp_path):
    module = _import_file(tmp_path / "edited_after_import.py", "def loss(x):\n    return x\n")
    (tmp_path / "edited_after_import.py").write_text("# the definition moved away\n\n\n")
    with expect(tmp_path):
        util.find_used_variables(module.loss)


def test_E_STATE_26_finding_the_variables_of_a_function_whose_file_does_not_parse(
        expect, tmp_path):
    module = _import_file(tmp_path / "broken_after_import.py", "def loss(x):\n    return x\n")
    (tmp_path / "broken_after_import.py").write_text("def loss(x:\n    return x\n")
    with expect(tmp_path):
        util.find_used_variables(module.loss)


# ===== Facades and the pure core ==========================================================

def test_E_FACADE_01_jit_of_a_plain_function_without_its_variables(expect):
    with expect():
        bridge.Jit(lambda x: x)


def test_E_FACADE_02_a_module_given_where_its_variables_are_expected(expect):
    model = nn.Sequential([linear(2, 1)])
    with expect(model):
        bridge.GradValues(lambda x: model(x).sum(), model)


def test_E_FACADE_03_a_collection_argument_of_the_wrong_kind(expect):
    model = linear()
    with expect(model):
        bridge.Jit(lambda x: model(x), 3)


def test_E_FACADE_04_vectorize_mapping_over_no_argument(expect):
    with expect():
        bridge.Vectorize(lambda x: x, bridge.VarCollection(), batch_axis=(None,))


def test_E_FACADE_05_vectorize_with_too_few_batch_axis_entries(expect):
    with expect():
        bridge.Vectorize(lambda x, y: x + y, bridge.VarCollection(), batch_axis=(0,))


def test_E_FACADE_06_vectorize_called_with_another_number_of_arguments(expect):
    s = bridge.StateVar(jnp.zeros(2))
    f = bridge.Vectorize(lambda *xs: xs[0] + s.value, bridge.VarCollection({"s": s}),
                         batch_axis=(0,))
    with expect(s):
        f(jnp.ones((4, 2)), jnp.ones((4, 2)))


def test_E_FACADE_07_vectorize_with_an_out_of_range_batch_axis(expect):
    f = bridge.Vectorize(lambda x: x, bridge.VarCollection(), batch_axis=(3,))
    with expect():
        f(jnp.ones((2, 3)))


def test_E_FACADE_08_vectorize_reduction_of_the_wrong_shape(expect):
    s = bridge.StateVar(jnp.zeros(3), reduce=lambda stacked: stacked)
    rs = bridge.RandomState(0)

    def f(x):
        s.value = s.value + x + 0 * rs.split(1)[0, 0]
        return x

    with expect(s, rs):
        bridge.Vectorize(f, bridge.VarCollection({"s": s, "rs": rs}))(jnp.ones((4, 3)))


def test_E_FACADE_09_input_argnums_that_is_not_a_tuple(expect):
    model = linear()
    with expect(model):
        bridge.GradValues(lambda x: model(x).sum(), model.vars(), input_argnums=1)


def test_E_FACADE_10_input_argnums_out_of_range_for_the_call(expect):
    model = linear()
    gv = bridge.GradValues(lambda x: model(x).sum(), model.vars(), input_argnums=(2,))
    with expect(model):
        gv(jnp.ones((1, 3)))


def test_E_FACADE_11_grad_values_of_a_non_scalar_loss(expect):
    model = linear()
    with expect(model) as info:
        bridge.GradValues(lambda x: model(x), model.vars())(jnp.ones((1, 3)))
    assert "has_aux" not in str(info.value)  # GradValues has no has_aux


def test_E_FACADE_12_grad_values_of_a_loss_returning_an_empty_tuple(expect):
    model = linear()
    with expect(model):
        bridge.GradValues(lambda x: (), model.vars())(jnp.ones((1, 3)))


def test_E_FACADE_13_brainpy_grad_of_a_non_scalar_function(expect):
    w = bridge.TrainVar(jnp.ones(3))
    with expect(w):
        bridge.grad(lambda x: x * w.value, grad_vars=w)(jnp.ones(3))


def test_E_FACADE_14_has_aux_without_a_pair(expect):
    w = bridge.TrainVar(jnp.ones(3))
    with expect(w):
        bridge.grad(lambda x: (x * w.value).sum(), grad_vars=w, has_aux=True)(jnp.ones(3))


def test_E_FACADE_15_grad_vars_holding_something_other_than_variables(expect):
    w = bridge.TrainVar(jnp.ones(3))
    with expect(w):
        bridge.grad(lambda x: (x * w.value).sum(), grad_vars=[w, 3])


def test_E_FACADE_16_parallel_outside_replicate(expect):
    model = linear()
    with expect(model):
        bridge.Parallel(model)(jnp.ones((2, 3)))


def test_E_FACADE_17_parallel_reduce_that_cannot_take_a_scalar_output(expect):
    model = linear()
    step = bridge.Parallel(lambda x: model(x).sum(), model.vars())
    with model.vars().replicate():
        inside = _state(model)
        with pytest.raises(ValueError) as info:
            step(jnp.ones((2, 3)))
        assert _state(model) == inside
    check_error("E-FACADE-17", info.value)
    with expect(model):
        with model.vars().replicate():
            step(jnp.ones((2, 3)))


_TWO_DEVICES = """
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax.numpy as jnp
import numpy as np
import bridge

def run(trigger, model):
    before = [np.asarray(v) for v in model.vars().tensors()]
    try:
        trigger()
    except Exception as e:
        after = [np.asarray(v) for v in model.vars().tensors()]
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        return {"type": f"{type(e).__module__}.{type(e).__qualname__}", "message": str(e),
                "unchanged": same}
    return {"type": None}

model = bridge.nn.Linear(2, 2)
step = bridge.Parallel(model)

def call():
    with model.vars().replicate():
        step(jnp.ones((3, 2)))

print(json.dumps({"E-FACADE-18": run(call, model),
                  "E-FACADE-19": run(lambda: step.device_reshape(jnp.ones((3, 2))), model)}))
"""


@pytest.fixture(scope="module", autouse=True)
def _two_device_run():
    """Start the 2-device run when the module starts, so that it overlaps the other tests."""
    process = subprocess.Popen([sys.executable, "-c", _TWO_DEVICES], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


@pytest.fixture(scope="module")
def two_devices(_two_device_run) -> dict:
    """The Parallel rows that need a batch that does not split: run on 2 CPU devices."""
    out, err = _two_device_run.communicate(timeout=300)
    assert _two_device_run.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _check_reported(row_id: str, report: dict) -> None:
    name, _ = catalogue()[row_id]
    cls = resolve(name)
    assert report["type"] == f"{cls.__module__}.{cls.__qualname__}", report
    for excerpt in catalogue()[row_id][1]:
        assert excerpt in report["message"], report["message"]
    assert report["unchanged"], f"{row_id}: the variables changed"


def test_E_FACADE_18_parallel_batch_that_does_not_split_over_the_devices(two_devices):
    _check_reported("E-FACADE-18", two_devices["E-FACADE-18"])


def test_E_FACADE_19_device_reshape_that_does_not_split_over_the_devices(two_devices):
    _check_reported("E-FACADE-19", two_devices["E-FACADE-19"])


def test_E_FACADE_20_functionalized_call_with_the_wrong_number_of_values(expect):
    model = linear()
    pure = bridge.pure.functionalize(model, model.vars())
    with expect(model):
        pure([jnp.zeros(2)], jnp.ones((1, 3)))


def test_E_FACADE_21_pure_jacobian_with_an_unknown_mode(expect):
    with expect():
        bridge.pure.jacobian(lambda x: x, mode="sideways")


def test_E_FACADE_22_per_example_gradients_with_a_microbatch_that_does_not_divide(expect):
    g = bridge.pure.per_example_grad_values(lambda p, x: (p * x).sum(), microbatch=2)
    with expect():
        g(jnp.ones(3), jnp.ones((3, 3)))


# ===== Optimizers =========================================================================

def test_E_OPT_01_optax_called_with_a_learning_rate(expect):
    model = linear()
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(0.1))
    with expect(model, opt):
        opt(0.1, [jnp.ones(2), jnp.ones((3, 2))])


def test_E_OPT_02_wrong_number_of_gradients(expect):
    model = linear()
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(0.1))
    with expect(model, opt):
        opt([jnp.ones(2)])


def test_E_OPT_03_gradients_of_the_wrong_shape(expect):
    model = linear()
    opt = bridge.optimizer.Adam(model.vars())
    with expect(model, opt):
        opt(0.1, [jnp.ones(2), jnp.ones((2, 3))])


def test_E_OPT_04_a_gradient_that_is_not_numeric(expect):
    model = linear()
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(0.1))
    with expect(model, opt):
        opt([jnp.ones(2), jnp.ones((3, 2), bool)])


def test_E_OPT_05_optax_state_that_changes_dtype(expect):
    def init(params):
        return [jnp.zeros((), jnp.float32)]

    def update(updates, state, params=None):
        return updates, [state[0].astype(jnp.float16)]

    model = linear()
    opt = bridge.optimizer.Optax(model.vars(), optax.GradientTransformation(init, update))
    with expect(model, opt):
        opt([jnp.ones(2), jnp.ones((3, 2))])


def test_E_OPT_06_optimizer_step_inside_jit_without_the_optimizer_variables(expect):
    model = linear()
    opt = bridge.optimizer.Momentum(model.vars())
    with expect(model, opt):
        bridge.Jit(lambda g: opt(0.1, g), model.vars())([jnp.ones(2), jnp.ones((3, 2))])


def test_E_OPT_07_trust_ratio_update_without_the_parameters(expect):
    tx = bridge.optimizer.scale_by_objax_trust_ratio()
    with expect():
        tx.update([jnp.ones(2)], tx.init([jnp.ones(2)]))


def test_E_OPT_08_linear_annealing_with_max_step_zero(expect):
    with expect():
        bridge.optimizer.scheduler.LinearAnnealing(max_step=0, base_lr=0.1)


def test_E_OPT_09_linear_annealing_with_base_lr_zero(expect):
    with expect():
        bridge.optimizer.scheduler.LinearAnnealing(max_step=10, base_lr=0)


def test_E_OPT_10_linear_annealing_with_min_lr_above_base_lr(expect):
    with expect():
        bridge.optimizer.scheduler.LinearAnnealing(max_step=10, base_lr=0.1, min_lr=0.5)


def test_E_OPT_11_step_decay_with_step_size_zero(expect):
    with expect():
        bridge.optimizer.scheduler.StepDecay(step_size=0, base_lr=0.1)


def test_E_OPT_12_scheduler_without_multiplier(expect):
    with expect():
        Warmup(0.1)(3)


# ===== Layers and functional ==============================================================

def test_E_LAYER_01_conv_channels_not_divisible_by_groups(expect):
    with expect():
        nn.Conv2D(3, 4, 3, groups=2)


def test_E_LAYER_02_conv_on_an_input_with_other_channels(expect):
    conv = nn.Conv2D(3, 4, 3, w_init=jnp.zeros)
    with expect(conv):
        conv(jnp.ones((1, 2, 5, 5)))


def test_E_LAYER_03_group_norm_channels_not_divisible_by_groups(expect):
    with expect():
        nn.GroupNorm2D(6, groups=4)


def test_E_LAYER_04_group_norm_on_an_input_with_other_channels(expect):
    norm = nn.GroupNorm2D(4, groups=2)
    with expect(norm):
        norm(jnp.ones((1, 3, 2, 2)))


def test_E_LAYER_05_moving_average_of_another_shape(expect):
    average = nn.MovingAverage((3,), 2)
    with expect(average):
        average(jnp.ones(4))


def test_E_LAYER_06_synced_batch_norm_training_outside_parallel(expect):
    norm = nn.SyncedBatchNorm2D(3)
    with expect(norm):
        norm(jnp.ones((2, 3, 2, 2)), training=True)


def test_E_LAYER_07_collective_outside_parallel(expect):
    with expect():
        F.parallel.pmean(jnp.ones(2))


def test_E_LAYER_08_initializer_with_an_empty_shape(expect):
    with expect():
        nn.init.xavier_normal(())


def test_E_LAYER_09_identity_initializer_with_a_3d_shape(expect):
    with expect():
        nn.init.identity((2, 2, 2))


def test_E_LAYER_10_pooling_an_input_that_is_not_nchw(expect):
    with expect():
        F.max_pool_2d(jnp.ones((2, 3, 4)))


def test_E_LAYER_11_space_to_batch_with_indivisible_sides(expect):
    with expect():
        F.space_to_batch2d(jnp.ones((1, 1, 3, 4)))


def test_E_LAYER_12_batch_to_space_with_an_indivisible_batch(expect):
    with expect():
        F.batch_to_space2d(jnp.ones((3, 1, 2, 2)))


def test_E_LAYER_13_channel_to_space_with_indivisible_channels(expect):
    with expect():
        F.channel_to_space2d(jnp.ones((1, 3, 2, 2)))


def test_E_LAYER_14_unknown_interpolation_name(expect):
    with expect():
        F.upsample_2d(jnp.ones((1, 1, 2, 2)), 2, method="cubicc")


def test_E_LAYER_15_interpolation_of_the_wrong_type(expect):
    with expect():
        F.upsample_2d(jnp.ones((1, 1, 2, 2)), 2, method=3)


def test_E_LAYER_16_upsample_an_input_that_is_not_nchw(expect):
    with expect():
        F.upsample_2d(jnp.ones((1, 2, 2)), 2)


def test_E_LAYER_17_interpolate_with_both_size_and_scale_factor(expect):
    with expect():
        F.interpolate(jnp.ones((1, 1, 2, 2)), size=4, scale_factor=2)


def test_E_LAYER_18_interpolate_with_too_many_sizes(expect):
    with expect():
        F.interpolate(jnp.ones((1, 2)), size=(4, 4, 4))


def test_E_LAYER_19_unknown_padding_name(expect):
    with expect():
        nn.Conv2D(3, 4, 3, padding="FULL")


def test_E_LAYER_20_invalid_padding(expect):
    with expect():
        nn.Conv2D(3, 4, 3, padding=((1, 1, 1),))


def test_E_LAYER_21_kernel_size_with_too_many_entries(expect):
    with expect():  # a stride is checked before the weights are drawn, like the kernel
        nn.Conv2D(3, 4, 3, strides=(1, 1, 1))



# ===== Random numbers =====================================================================

def test_E_RANDOM_01_drawing_from_an_undeclared_generator_inside_jit(expect):
    model, generator = linear(), bridge.random.Generator(5)

    def noisy(x):
        return model(x) + bridge.random.normal((2,), generator=generator)

    with expect(model, generator):
        bridge.Jit(noisy, model.vars())(jnp.ones((1, 3)))


def test_E_RANDOM_02_seeding_an_undeclared_random_state_inside_jit(expect):
    model, rs = linear(), bridge.RandomState(1)

    def step(x):
        rs.seed(2)
        return model(x)

    with expect(model, rs):
        bridge.Jit(step, model.vars())(jnp.ones((1, 3)))


def test_E_RANDOM_03_assigning_a_typed_key_to_a_random_state(expect):
    rs = bridge.RandomState(1)
    with expect(rs):
        rs.assign(jax.random.key(2))


# ===== Privacy ============================================================================

def private(model, **kwargs) -> dpsgd.PrivateGradValues:
    keygen = kwargs.pop("keygen", bridge.random.Generator(7))
    return dpsgd.PrivateGradValues(lambda x: model(x).sum(), model.vars(),
                                   kwargs.pop("noise_multiplier", 1.0),
                                   kwargs.pop("l2_norm_clip", 1.0), keygen=keygen, **kwargs)


def test_E_PRIV_01_private_gradients_batched_on_another_axis(expect):
    model = linear()
    with expect(model):
        private(model, batch_axis=(1,))


def test_E_PRIV_02_reshape_microbatch_of_an_indivisible_batch(expect):
    model = linear()
    gv = private(model, microbatch=2)
    with expect(model, gv.keygen):
        gv.reshape_microbatch(jnp.ones((3, 3)))


def test_E_PRIV_03_private_gradients_called_without_arguments(expect):
    model = linear()
    gv = private(model)
    with expect(model, gv.keygen):
        gv()


def test_E_PRIV_04_private_gradients_with_more_batch_axes_than_arguments(expect):
    model = linear()
    gv = private(model, batch_axis=(0, 0))
    with expect(model, gv.keygen):
        gv(jnp.ones((2, 3)))


def test_E_PRIV_05_private_gradients_of_a_batch_not_divisible_by_microbatch(expect):
    model = linear()
    gv = private(model, microbatch=2)
    with expect(model, gv.keygen):
        gv(jnp.ones((3, 3)))


def test_E_PRIV_06_negative_clipping_norm(expect):
    model = linear()
    with expect(model):
        private(model, l2_norm_clip=-1.0)


def test_E_PRIV_07_unknown_clipping_method(expect):
    model = linear()
    with expect(model):
        private(model, method="fast")


def test_E_PRIV_08_microbatch_zero(expect):
    with expect():
        bridge.pure.clipped_grad(lambda p, x: (p * x).sum(), 1.0, microbatch=0)


def test_E_PRIV_09_noisy_clipped_gradient_without_a_key(expect):
    g = bridge.pure.clipped_grad(lambda p, x: (p * x).sum(), 1.0, noise_multiplier=1.0)
    with expect():
        g(jnp.ones(3), jnp.ones((4, 3)))


def test_E_PRIV_10_clipped_gradient_batch_axis_of_the_wrong_length(expect):
    g = bridge.pure.clipped_grad(lambda p, x: (p * x).sum(), 1.0, batch_axis=(0, 0))
    with expect():
        g(jnp.ones(3), jnp.ones((4, 3)))


def test_E_PRIV_11_clipped_gradient_without_a_batched_argument(expect):
    g = bridge.pure.clipped_grad(lambda p, x: (p * x).sum(), 1.0, batch_axis=(None,))
    with expect():
        g(jnp.ones(3), jnp.ones((4, 3)))


def test_E_PRIV_12_clipped_gradient_of_arguments_with_different_batch_sizes(expect):
    g = bridge.pure.clipped_grad(lambda p, x, y: (p * x).sum() + y.sum(), 1.0)
    with expect():
        g(jnp.ones(3), jnp.ones((4, 3)), jnp.ones(5))


def test_E_PRIV_13_sampling_rate_outside_zero_one(expect):
    with expect():
        dpsgd.analyze_dp(q=2, noise_multiplier=1.0, steps=10, delta=1e-5)


def test_E_PRIV_14_negative_noise_multiplier(expect):
    with expect():
        dpsgd.analyze_dp(q=0.1, noise_multiplier=-1.0, steps=10, delta=1e-5)


def test_E_PRIV_15_negative_steps(expect):
    with expect():
        dpsgd.analyze_dp(q=0.1, noise_multiplier=1.0, steps=-1, delta=1e-5)


def test_E_PRIV_16_heterogeneous_analysis_with_sequences_of_different_lengths(expect):
    with expect():
        dpsgd.analyze_heterogeneous_renyi([0.1, 0.2], [1.0], [10], dpsgd.DEFAULT_ORDERS)


def test_E_PRIV_17_conversion_without_a_target(expect):
    with expect():
        dpsgd.convert_renyidp_to_dp([2, 3], [0.1, 0.2])


def test_E_PRIV_18_conversion_with_more_orders_than_values(expect):
    with expect():
        dpsgd.convert_renyidp_to_dp([2, 3], [0.1], target_delta=1e-5)


def test_E_PRIV_19_privacy_analysis_without_dp_accounting(expect):
    with missing_module("dp_accounting"), expect():
        dpsgd.analyze_dp(q=0.1, noise_multiplier=1.0, steps=10, delta=1e-5)


# ===== Zoo, I/O and utilities =============================================================

def test_E_ZOO_01_dnnet_with_one_layer_size(expect):
    with expect():
        zoo.DNNet([3], jax.nn.relu)


def test_E_ZOO_02_wide_resnet_depth_not_6n_plus_4(expect):
    with expect():
        zoo.WideResNet(3, 10, depth=20)


def test_E_ZOO_03_resnet_v2_per_group_lists_of_different_lengths(expect):
    with expect():
        zoo.ResNetV2(3, 10, blocks_per_group=[1, 1], bottleneck=False,
                     channels_per_group=[64], group_strides=[1, 2],
                     group_use_projection=[False, True])


def test_E_ZOO_04_rnn_called_before_init_state(expect):
    rnn = zoo.RNN(2, 3, 4, w_init=jnp.zeros)
    with expect(rnn):
        rnn(jnp.ones((5, 1, 3)))


@pytest.fixture
def vgg_files(tmp_path, monkeypatch):
    """VGG19's weights and class-name paths pointed into ``tmp_path``."""
    monkeypatch.setattr(zoo.vgg, "_VGG19_NPY", str(tmp_path / "vgg19.npy"))
    monkeypatch.setattr(zoo.vgg, "_SYNSET_PATH", str(tmp_path / "synset.txt"))
    return tmp_path


def test_E_ZOO_05_pretrained_vgg_without_the_weights_file(expect, vgg_files):
    with expect(vgg_files):
        zoo.VGG19(pretrained=True)


def test_E_ZOO_06_vgg_weights_file_pickling_an_object(expect, vgg_files):
    np.save(vgg_files / "vgg19.npy", np.array({"conv1_1": datetime.date(2020, 1, 1)}),
            allow_pickle=True)
    with expect(vgg_files):
        zoo.VGG19(pretrained=True)


def test_E_ZOO_07_vgg_weights_file_holding_a_plain_array(expect, vgg_files):
    np.save(vgg_files / "vgg19.npy", np.zeros(3))
    with expect(vgg_files):
        zoo.VGG19(pretrained=True)


def test_E_ZOO_08_vgg_weights_of_the_wrong_shapes(expect, vgg_files):
    layers = {"conv1_1": [np.zeros((3, 3, 3, 2), np.float32), np.zeros(2, np.float32)]}
    np.save(vgg_files / "vgg19.npy", np.array(layers, dtype=object), allow_pickle=True)
    with expect(vgg_files):
        zoo.VGG19(pretrained=True)


def test_E_ZOO_09_vgg_class_names_that_cannot_be_downloaded(expect, vgg_files, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(zoo.vgg, "_load_weights", dict)  # the weights file is not the point
    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with expect(vgg_files):
        zoo.VGG19(pretrained=True)


def test_E_ZOO_10_keras_weights_for_an_unknown_architecture(expect):
    with expect():
        zoo.resnet_v2.load_pretrained_weights_from_keras("ResNet42")


def test_E_ZOO_11_keras_classifier_with_another_number_of_classes(expect):
    with expect():
        zoo.resnet_v2.load_pretrained_weights_from_keras("ResNet50", num_classes=10)


def test_E_ZOO_12_keras_weights_without_tensorflow(expect):
    with missing_module("tensorflow"), expect():
        zoo.resnet_v2.load_pretrained_weights_from_keras("ResNet50")


def test_E_ZOO_13_keras_layer_without_a_kernel(expect):
    dense = linear()
    with expect(dense):
        zoo.resnet_v2.convert_conv_or_linear_layer(layer("dense", bias=np.ones(2)), dense)


def test_E_ZOO_14_keras_kernel_of_another_shape(expect):
    dense = linear()
    with expect(dense):
        zoo.resnet_v2.convert_conv_or_linear_layer(
            layer("dense", kernel=np.ones((4, 2), np.float32)), dense)


def test_E_ZOO_15_keras_bias_of_another_size(expect):
    dense = linear()
    keras = layer("dense", kernel=np.ones((3, 2), np.float32), bias=np.ones(5, np.float32))
    with expect(dense):
        zoo.resnet_v2.convert_conv_or_linear_layer(keras, dense)


def test_E_ZOO_16_keras_batch_norm_without_gamma(expect):
    norm = nn.BatchNorm2D(2)
    keras = layer("bn", beta=np.ones(2), moving_mean=np.ones(2), moving_variance=np.ones(2))
    with expect(norm):
        zoo.resnet_v2.convert_bn_layer(keras, norm)


def test_E_ZOO_17_keras_block_missing_a_layer(expect):
    block = resnet_block(True)
    with expect(block):
        zoo.resnet_v2.convert_resblock([layer("conv2_block1_2_conv")], block)


def test_E_ZOO_18_keras_block_into_a_block_that_is_not_a_bottleneck(expect):
    block = resnet_block(False)
    with expect(block):
        zoo.resnet_v2.convert_resblock([], block)


def test_E_ZOO_19_summary_scalar_on_a_text_tag(expect):
    summary = bridge.jaxboard.Summary()
    summary.text("t", "hello")
    with expect():
        summary.scalar("t", 1.0)
    assert isinstance(summary["t"], bridge.jaxboard.Text)


def test_E_ZOO_20_summary_holding_a_foreign_entry(expect):
    summary = bridge.jaxboard.Summary()
    summary["x"] = 3
    with expect():
        summary()


def test_E_ZOO_21_summaries_without_tensorboardx(expect):
    summary = bridge.jaxboard.Summary()
    summary.scalar("loss", 1.0)
    with missing_module("tensorboardX"), expect():
        summary()


def test_E_ZOO_22_png_of_an_integer_array(expect):
    with expect():
        util.image.to_png(np.zeros((3, 2, 2), np.int32))


def test_E_ZOO_23_png_of_an_array_that_is_not_one_image(expect):
    with expect():
        util.image.to_png(np.zeros((2, 2, 2), np.float32))


def test_E_ZOO_24_png_without_pillow(expect):
    with missing_module("PIL", "PIL.Image"), expect():
        util.image.to_png(np.zeros((3, 2, 2), np.float32))


def test_E_ZOO_25_easy_dict_without_the_entry(expect):
    d = util.EasyDict(a=1)
    with expect():
        d.b  # noqa: B018
    with expect():
        del d.b
    assert d == {"a": 1}


def test_E_ZOO_26_args_indexes_of_an_unknown_parameter(expect):
    with expect():
        util.args_indexes(lambda a, b: a, ["c"])


def test_E_ZOO_27_ilog2_of_zero(expect):
    with expect():
        util.ilog2(0)


def test_E_ZOO_28_map_to_device_of_a_scalar(expect):
    with expect():
        util.map_to_device(jnp.float32(1))


def test_E_ZOO_29_objax_check_of_a_value_that_is_not_a_jax_array(expect):
    with expect():
        util.check.assert_assigned_type_and_shape_match(jnp.zeros(2), np.zeros(2))


def test_E_ZOO_30_objax_check_of_a_value_of_another_shape(expect):
    with expect():
        util.check.assert_assigned_type_and_shape_match(jnp.zeros(2), jnp.zeros(3))


# ===== Checkpoints ========================================================================

@pytest.fixture
def saved(tmp_path):
    """A ``Linear(3, 2)`` saved to ``tmp_path/model.msgpack`` (the directory is watched)."""
    model = linear()
    bridge.checkpoint.save(tmp_path / "model.msgpack", model.vars(), step=7)
    return model, tmp_path / "model.msgpack"


def test_E_CKPT_01_restore_into_a_variable_of_another_shape(expect, saved):
    _, path = saved
    other = linear(2, 2)
    with expect(other, path.parent):
        bridge.checkpoint.restore(path, other.vars())


def test_E_CKPT_02_restore_into_a_variable_of_another_dtype(expect, saved):
    _, path = saved
    vc = bridge.VarCollection({"(Linear).b": bridge.TrainVar(jnp.zeros(2, jnp.int32)),
                               "(Linear).w": bridge.TrainVar(jnp.zeros((3, 2)))})
    with expect(vc, path.parent):
        bridge.checkpoint.restore(path, vc)


class Other(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.zeros((3, 2)))
        self.b = bridge.TrainVar(jnp.zeros(2))


def test_E_CKPT_03_restore_into_renamed_variables(expect, saved):
    _, path = saved
    other = Other()
    with expect(other, path.parent):
        bridge.checkpoint.restore(path, other.vars())


def test_E_CKPT_04_restore_with_entries_no_variable_takes(expect, tmp_path):
    model = linear()
    opt = bridge.optimizer.Adam(model.vars())
    bridge.checkpoint.save(tmp_path / "run.msgpack", model.vars() + opt.vars())
    fresh = linear()
    with expect(fresh, tmp_path):
        bridge.checkpoint.restore(tmp_path / "run.msgpack", fresh.vars())


def test_E_CKPT_05_from_tree_with_float64_arrays(expect):
    model = linear()
    with expect(model):
        bridge.checkpoint.from_tree(model.vars(), {"(Linear).w": np.zeros((3, 2))})


def test_E_CKPT_06_restore_an_empty_file(expect, tmp_path):
    model = linear()
    (tmp_path / "empty.msgpack").write_bytes(b"")
    with expect(model, tmp_path):
        bridge.checkpoint.restore(tmp_path / "empty.msgpack", model.vars())


def test_E_CKPT_07_restore_a_truncated_file(expect, saved):
    model, path = saved
    truncated = path.with_name("truncated.msgpack")
    truncated.write_bytes(path.read_bytes()[:40])
    with expect(model, path.parent):
        bridge.checkpoint.restore(truncated, model.vars())


def test_E_CKPT_08_restore_a_file_with_a_changed_byte(expect, saved):
    model, path = saved
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    damaged = path.with_name("damaged.msgpack")
    damaged.write_bytes(bytes(data))
    with expect(model, path.parent):
        bridge.checkpoint.restore(damaged, model.vars())


def test_E_CKPT_09_restore_a_msgpack_file_bridge_did_not_write(expect, tmp_path):
    import msgpack

    model = linear()
    (tmp_path / "other.msgpack").write_bytes(msgpack.packb({"weights": [1, 2]}))
    with expect(model, tmp_path):
        bridge.checkpoint.restore(tmp_path / "other.msgpack", model.vars())


def test_E_CKPT_10_restore_a_newer_format_version(expect, saved):
    import msgpack

    model, path = saved
    document = msgpack.unpackb(path.read_bytes(), raw=False)
    document["version"] = 999
    newer = path.with_name("newer.msgpack")
    newer.write_bytes(msgpack.packb(document, use_bin_type=True))
    with expect(model, path.parent):
        bridge.checkpoint.restore(newer, model.vars())


def test_E_CKPT_11_restore_an_npz_with_a_pickled_array(expect, tmp_path):
    model = linear()
    np.savez(tmp_path / "pickled.npz", names=np.array(["(Linear).b"]),
             **{"0": np.array([{"a": 1}], dtype=object)})
    with expect(model, tmp_path):
        bridge.checkpoint.restore(tmp_path / "pickled.npz", model.vars())


def test_E_CKPT_12_restore_an_npz_neither_bridge_nor_objax_wrote(expect, tmp_path):
    model = linear()
    np.savez(tmp_path / "arrays.npz", a=np.zeros(2))
    with expect(model, tmp_path):
        bridge.checkpoint.restore(tmp_path / "arrays.npz", model.vars())


def test_E_CKPT_13_save_into_a_missing_directory(expect, tmp_path):
    model = linear()
    with expect(model, tmp_path):
        bridge.checkpoint.save(tmp_path / "missing" / "model.msgpack", model.vars())


def test_E_CKPT_14_save_inside_jit(expect, tmp_path):
    model = linear()

    def step():
        bridge.checkpoint.save(tmp_path / "model.msgpack", model.vars())
        return 0

    with expect(model, tmp_path):
        bridge.Jit(step, model.vars())()


def test_E_CKPT_15_save_a_dtype_no_format_stores(expect, tmp_path):
    vc = bridge.VarCollection({"small": bridge.StateVar(jnp.zeros(2, jnp.int4))})
    with expect(vc, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.msgpack", vc)


def test_E_CKPT_16_save_a_name_with_a_lone_surrogate(expect, tmp_path):
    vc = bridge.VarCollection({"\ud800": bridge.StateVar(jnp.zeros(2))})
    with expect(vc, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.msgpack", vc)


def test_E_CKPT_17_save_an_array_too_large_for_msgpack(expect, tmp_path, monkeypatch):
    from bridge.checkpoint import _format

    monkeypatch.setattr(_format, "_MAX_BIN", 16)  # 4 GiB stands for 16 bytes here
    model = linear()
    with expect(model, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.msgpack", model.vars())


def test_E_CKPT_18_save_a_checkpoint_too_large_for_msgpack(expect, tmp_path, monkeypatch):
    from bridge.checkpoint import _format

    monkeypatch.setattr(_format, "_MAX_BIN", 40)  # every array fits, all of them do not
    model = linear()
    with expect(model, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.msgpack", model.vars())


def test_E_CKPT_19_save_with_an_unknown_format(expect, tmp_path):
    model = linear()
    with expect(model, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.pkl", model.vars(), format="pickle")


def test_E_CKPT_20_save_a_list_of_variables(expect, tmp_path):
    model = linear()
    with expect(model, tmp_path):
        bridge.checkpoint.save(tmp_path / "model.msgpack", [model.w, model.b])


def test_E_CKPT_21_from_tree_of_a_list(expect):
    model = linear()
    with expect(model):
        bridge.checkpoint.from_tree(model.vars(), [np.zeros(2)])


def test_E_CKPT_22_checkpoint_manager_keeping_no_file(expect, tmp_path):
    with expect(tmp_path):
        bridge.io.Checkpoint(tmp_path, keep_ckpts=0)


def test_E_CKPT_23_checkpoint_manager_negative_number(expect, tmp_path):
    model = linear()
    manager = bridge.io.Checkpoint(tmp_path)
    with expect(model, tmp_path):
        manager.save(model.vars(), -1)


def test_E_CKPT_24_checkpoint_manager_restoring_a_missing_number(expect, tmp_path):
    model = linear()
    manager = bridge.io.Checkpoint(tmp_path)
    manager.save(model.vars(), 1)
    with expect(model, tmp_path):
        manager.restore(model.vars(), 5)


def test_E_CKPT_25_checkpoint_number_of_a_file_name_without_one(expect):
    with expect():
        bridge.io.Checkpoint.checkpoint_idx("model.npz")


# ===== Interop and converters =============================================================

def mlp() -> nn.Sequential:
    return nn.Sequential([linear()])


def test_E_INTEROP_01_translate_to_an_unknown_scheme(expect):
    model = mlp()
    with expect(model):
        bridge.interop.translate(model.vars(), "torch")


def test_E_INTEROP_02_port_to_an_unknown_scheme(expect):
    with expect():
        bridge.interop.port({"params": {}}, "linen", "objax")


def test_E_INTEROP_03_an_unknown_preset(expect):
    model = mlp()
    with expect(model):
        bridge.interop.translate(model.vars(), "linen", rules="flat")


def test_E_INTEROP_04_rule_target_with_an_unknown_placeholder(expect):
    with expect():
        bridge.interop.Rule("{p*}.w", "{q}/kernel")


def test_E_INTEROP_05_a_rule_that_matches_no_name(expect):
    model = mlp()
    rule = bridge.interop.Rule("(Conv2D).w", "params/conv/kernel")
    with expect(model):
        bridge.interop.translate(model.vars(), "linen", rules=[rule])


def test_E_INTEROP_06_a_variable_name_that_cannot_be_translated(expect):
    vc = bridge.VarCollection({"w": bridge.TrainVar(jnp.zeros(2))})
    with expect(vc):
        bridge.interop.translate(vc, "linen")


def test_E_INTEROP_07_two_variables_translated_to_one_name(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    rules = [bridge.interop.Rule("{p*}.b", "params/x"), bridge.interop.Rule("{p*}.w", "params/x")]
    with expect(model):
        flax.to_linen_variables(model.vars(), rules=rules)


def test_E_INTEROP_08_a_converter_given_a_module(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    with expect(model):
        flax.to_linen_variables(model)


def test_E_INTEROP_09_linen_variables_that_are_not_a_dict(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    with expect(model):
        flax.load_linen_variables(model.vars(), [np.zeros(2)])


def test_E_INTEROP_10_haiku_params_that_are_not_a_dict(expect):
    haiku = pytest.importorskip("bridge.haiku")
    model = mlp()
    with expect(model):
        haiku.load_haiku_params(model.vars(), [np.zeros(2)])


def test_E_INTEROP_11_haiku_module_params_that_are_not_a_dict(expect):
    haiku = pytest.importorskip("bridge.haiku")
    model = mlp()
    with expect(model):
        haiku.load_haiku_params(model.vars(), {"linear": [np.zeros(2)]})


def test_E_INTEROP_12_nnx_state_that_is_not_a_state(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    with expect(model):
        flax.load_nnx_state(model.vars(), [np.zeros(2)])


def linen_tree(model: nn.Sequential, **leaves) -> dict:
    """The Linen variables of ``model``, with some leaves replaced."""
    flax = pytest.importorskip("bridge.flax")
    variables = flax.to_linen_variables(model.vars())
    layer = dict(variables["params"]["layers_0"], **leaves)
    return {"params": {"layers_0": layer}}


def test_E_INTEROP_13_strict_load_of_an_entry_of_another_shape(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    variables = linen_tree(model, kernel=jnp.zeros((2, 2)))
    with expect(model):
        flax.load_linen_variables(model.vars(), variables)


def test_E_INTEROP_14_strict_load_of_float64_arrays(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), linen_tree(model))
    with expect(model):
        flax.load_linen_variables(model.vars(), variables)


def test_E_INTEROP_15_strict_load_of_entries_named_otherwise(expect):
    flax = pytest.importorskip("bridge.flax")
    model = mlp()
    variables = {"params": {"Dense_7": linen_tree(model)["params"]["layers_0"]}}
    with expect(model):
        flax.load_linen_variables(model.vars(), variables)


def test_E_INTEROP_16_nnx_variable_of_the_wrong_kind(expect):
    flax = pytest.importorskip("bridge.flax")
    from flax import nnx

    model = mlp()
    state = nnx.State({"layers": {0: {"bias": nnx.BatchStat(jnp.zeros(2)),
                                      "kernel": nnx.Param(jnp.zeros((3, 2)))}}})
    with expect(model):
        flax.load_nnx_state(model.vars(), state)


def test_E_INTEROP_17_port_that_does_not_fit_like(expect):
    haiku = pytest.importorskip("bridge.haiku")
    model = mlp()
    like = haiku.to_haiku_params(model.vars())  # Haiku's names: params/linear/{w,b}
    with expect(model):
        bridge.interop.port(linen_tree(model), "linen", "haiku", like=like)


def test_E_INTEROP_18_export_of_a_name_that_extends_another(expect):
    flax = pytest.importorskip("bridge.flax")

    class Root(bridge.Module):
        pass

    root = Root()
    root.a = bridge.TrainVar(jnp.zeros(2))
    setattr(root, "a/b", bridge.TrainVar(jnp.zeros(3)))
    with expect(root):
        flax.to_linen_variables(root.vars())


def test_E_INTEROP_19_bridge_flax_without_flax(expect):
    saved = {n: m for n, m in sys.modules.items() if n == "bridge.flax" or
             n.startswith("bridge.flax.")}
    for n in saved:
        del sys.modules[n]
    try:
        with missing_module("flax"), expect():
            importlib.import_module("bridge.flax")
    finally:
        sys.modules.update(saved)


def test_E_INTEROP_20_haiku_attention_to_linen_without_like(expect):
    hk = pytest.importorskip("haiku")
    x = jnp.ones((1, 2, 8))
    f = hk.without_apply_rng(hk.transform(lambda x: hk.MultiHeadAttention(
        2, 4, w_init=hk.initializers.VarianceScaling())(x, x, x)))
    params = f.init(jax.random.PRNGKey(0), x)
    with expect():
        bridge.interop.port(params, "haiku", "linen")


def test_E_INTEROP_21_safetensors_without_the_package(expect, tmp_path):
    with missing_module("safetensors", "safetensors.numpy"), expect():
        bridge.interop.load_safetensors(tmp_path / "w.safetensors")


# ===== Flax and Haiku wrappers ============================================================

@pytest.fixture(scope="module")
def linen():
    """A Linen model with a running sum in ``batch_stats/total``, its variables, an input.

    ``fault="dtype"`` stores the sum as float16; ``extra=True`` creates a new variable."""
    fnn = pytest.importorskip("flax.linen")

    class Net(fnn.Module):
        @fnn.compact
        def __call__(self, x, fault="", extra=False):
            x = fnn.Dense(2)(x)
            total = self.variable("batch_stats", "total", jnp.zeros, (2,))
            if extra:
                self.variable("batch_stats", "unexpected", jnp.zeros, ())
            value = total.value + x.mean(0)
            total.value = value.astype(jnp.float16) if fault else value
            return x

    x = jnp.ones((2, 3))
    return Net, Net().init(jax.random.PRNGKey(0), x), x


def test_E_WRAP_01_flax_module_of_an_nnx_module(expect, linen):
    from flax import nnx

    from bridge.flax import FlaxModule

    _, variables, _ = linen
    with expect():
        FlaxModule(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), variables)


def test_E_WRAP_02_flax_module_with_variables_that_are_not_a_dict(expect, linen):
    from bridge.flax import FlaxModule

    net, _, _ = linen
    with expect():
        FlaxModule(net(), [np.zeros(2)])


def test_E_WRAP_03_flax_module_called_with_mutable(expect, linen):
    from bridge.flax import FlaxModule

    net, variables, x = linen
    m = FlaxModule(net(), variables)
    with expect(m):
        m(x, mutable=["batch_stats"])


def test_E_WRAP_04_linen_model_creating_a_variable(expect, linen):
    from bridge.flax import FlaxModule

    net, variables, x = linen
    m = FlaxModule(net(), variables)
    with expect(m):
        m(x, extra=True)


def test_E_WRAP_05_linen_model_storing_another_dtype(expect, linen):
    from bridge.flax import FlaxModule

    net, variables, x = linen
    m = FlaxModule(net(), variables)
    with expect(m):
        m(x, fault="dtype")


def test_E_WRAP_06_nnx_module_of_a_linen_module(expect, linen):
    from bridge.flax import NNXModule

    net, _, _ = linen
    with expect():
        NNXModule(net())


def _nnx():
    return pytest.importorskip("flax.nnx")


def test_E_WRAP_07_nnx_variable_holding_several_arrays(expect):
    nnx = _nnx()
    from bridge.flax import NNXModule

    class Pair(nnx.Module):
        def __init__(self):
            self.pair = nnx.Variable((jnp.zeros(1), jnp.zeros(2)))

    with expect():
        NNXModule(Pair())


def test_E_WRAP_08_nnx_model_adding_a_variable_during_the_call(expect):
    nnx = _nnx()
    from bridge.flax import NNXModule

    class Grow(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(3))

        def __call__(self, x):
            self.extra = nnx.BatchStat(jnp.zeros(1))
            return x * self.w

    m = NNXModule(Grow())
    with expect(m):
        m(jnp.ones(3))


def test_E_WRAP_09_nnx_model_storing_another_dtype(expect):
    nnx = _nnx()
    from bridge.flax import NNXModule

    class Summing(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(3))
            self.total = nnx.BatchStat(jnp.zeros(3))

        def __call__(self, x):
            self.total.set_value((self.total.get_value() + x).astype(jnp.float16))
            return x * self.w

    m = NNXModule(Summing())
    with expect(m):
        m(jnp.ones(3))


@pytest.fixture(scope="module")
def haiku_model():
    """A Haiku model with state ``~/total`` (``fault=True`` stores it as float16)."""
    hk = pytest.importorskip("haiku")

    def f(x, fault=False):
        y = hk.Linear(2)(x)
        total = hk.get_state("total", [2], init=jnp.zeros)
        value = total + y.mean(0)
        hk.set_state("total", value.astype(jnp.float16) if fault else value)
        return y

    x = jnp.ones((2, 3))
    transformed = hk.transform_with_state(f)
    return transformed, transformed.init(jax.random.PRNGKey(0), x), x


def test_E_WRAP_10_haiku_module_of_a_plain_function(expect):
    pytest.importorskip("haiku")
    from bridge.haiku import HaikuModule

    with expect():
        HaikuModule(lambda x: x, {})


def test_E_WRAP_11_haiku_state_for_a_model_without_state(expect):
    hk = pytest.importorskip("haiku")
    from bridge.haiku import HaikuModule

    transformed = hk.transform(lambda x: hk.Linear(2)(x))
    params = transformed.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    with expect():
        HaikuModule(transformed, params, {"counter": {"n": jnp.zeros(())}})


def test_E_WRAP_12_haiku_model_returning_state_it_was_not_given(expect, haiku_model):
    from bridge.haiku import HaikuModule

    transformed, (params, _), x = haiku_model
    m = HaikuModule(transformed, params, {})
    with expect(m):
        m(x)


def test_E_WRAP_13_haiku_model_storing_another_dtype(expect, haiku_model):
    from bridge.haiku import HaikuModule

    transformed, (params, state), x = haiku_model
    m = HaikuModule(transformed, params, state)
    with expect(m):
        m(x, fault=True)


def test_E_WRAP_14_to_haiku_of_a_plain_function(expect):
    haiku = pytest.importorskip("bridge.haiku")
    with expect():
        haiku.to_haiku(lambda x: x)


def test_E_WRAP_15_to_haiku_apply_with_missing_params(expect):
    haiku = pytest.importorskip("bridge.haiku")
    model = linear()
    transformed = haiku.to_haiku(model)
    params, state = transformed.init(None, jnp.ones((1, 3)))
    del params["(Linear)"]["w"]
    with expect(model):
        transformed.apply(params, state, None, jnp.ones((1, 3)))



def test_E_WRAP_16_flax_model_drawing_from_an_undeclared_stream(expect):
    fnn = pytest.importorskip("flax.linen")
    from bridge.flax import FlaxModule

    class Noisy(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            return fnn.Dense(2)(x) + jax.random.normal(self.make_rng("noise"), (2,))

    x = jnp.ones((1, 3))
    m = FlaxModule(Noisy(), Noisy().init(jax.random.PRNGKey(0), x))
    with expect(m):
        m(x)


def test_E_WRAP_17_haiku_needs_rng_for_an_apply_without_rng(expect):
    hk = pytest.importorskip("haiku")
    from bridge.haiku import HaikuModule

    f = hk.without_apply_rng(hk.transform(lambda x: hk.Linear(2)(x)))
    params = f.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    with expect():
        HaikuModule(f, params, needs_rng=True)


def test_E_WRAP_18_flax_rng_streams_given_as_one_string(expect, linen):
    from bridge.flax import FlaxModule

    net, variables, _ = linen
    with expect():
        FlaxModule(net(), variables, rng_streams="dropout")

# ===== The page and this module agree =====================================================

def _tests_by_row() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, obj in globals().items():
        if name.startswith("test_E_") and callable(obj):
            found.setdefault(row_of(name), []).append(name)
    return found


def test_every_row_has_a_test_and_every_test_a_row():
    rows, tests = set(catalogue()), _tests_by_row()
    assert rows, f"no rows found in {PAGE}"
    assert not rows - set(tests), f"rows without a test: {sorted(rows - set(tests))}"
    assert not set(tests) - rows, f"tests without a row: {sorted(set(tests) - rows)}"
    twice = {k: v for k, v in tests.items() if len(v) > 1}
    assert not twice, f"one test per row: {twice}"


def test_every_row_names_an_exception_class():
    for row_id, (name, _) in catalogue().items():
        cls = resolve(name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), (row_id, name)


def _bridge_exception_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(bridge.__path__, "bridge."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency (flax, haiku, ...) is missing
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.split(".")[0] == "bridge":
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_the_class_table_gives_each_class_its_bases():
    """The "Exception classes" table: each class exists and subclasses what it says."""
    page = PAGE.read_text(encoding="utf-8")
    table = page[page.index("## Exception classes"):page.index("## State and variables")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 8
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        cls = resolve(_code_spans(cells[0])[0])
        for base in _code_spans(cells[1]):
            assert any(b.__name__ == base for b in cls.__mro__[1:]), (cls, base)


def test_every_exception_class_defined_in_bridge_is_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    classes = _bridge_exception_classes()
    assert len(classes) >= 8, sorted(classes)
    missing = [path for path, cls in classes.items() if f"{cls.__name__}`" not in page]
    assert not missing, f"exception classes missing from {PAGE.name}: {missing}"
