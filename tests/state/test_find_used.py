"""find_used_variables: which variables a function's source refers to, and their names.

Expected names are those Objax 1.8's ``objax.util.find_used_variables`` gives for the same
code (checked in /work/objax-venv), except where a test says it differs on purpose.
"""

import functools

import jax.numpy as jnp
import pytest

import bridge
from bridge.state._find_used import find_used_variables
from bridge.util import EasyDict

global_w = bridge.TrainVar(jnp.zeros(2))
global_net = bridge.nn.Sequential([bridge.nn.Linear(2, 1)])
cfg = EasyDict(net=global_net, scale=bridge.StateVar(jnp.ones(())))


class Holder:
    pass


holder = Holder()
holder.inner = Holder()
holder.inner.v = bridge.TrainVar(jnp.ones(1))


def names(fn):
    return list(find_used_variables(fn).keys())


def test_global_variable_is_named_after_the_global():
    def f(x):
        return x * global_w.value

    vc = find_used_variables(f)
    assert isinstance(vc, bridge.VarCollection)
    assert dict(vc) == {"global_w": global_w}


def test_module_contributes_all_its_variables_under_its_expression():
    def f(x):
        return global_net(x)

    assert dict(find_used_variables(f)) == dict(global_net.vars(scope="global_net."))


def test_closure_variables_are_found():
    w = bridge.TrainVar(jnp.zeros(2))
    b = bridge.TrainVar(jnp.zeros(1))

    def f(x):
        return x * w.value + b.value

    assert dict(find_used_variables(f)) == {"w": w, "b": b}


def test_closure_hides_a_global_of_the_same_name():
    global_w = bridge.TrainVar(jnp.ones(3))

    def f():
        return global_w.value

    assert find_used_variables(f)["global_w"] is global_w


def test_attribute_chains_are_followed_to_the_first_variable_or_module():
    def f(x):
        return cfg.net(x) * cfg.scale.value + holder.inner.v.value

    assert names(f) == ["cfg.net.(Sequential)[0](Linear).b",
                        "cfg.net.(Sequential)[0](Linear).w", "cfg.scale", "holder.inner.v"]


def test_stored_attribute_chain_still_reads_its_object():
    def f(x):
        holder.inner.v.value = x

    assert names(f) == ["holder.inner.v"]


def test_names_are_in_source_order():
    def f(x):
        return holder.inner.v.value + global_w.value

    assert names(f) == ["holder.inner.v", "global_w"]


def test_lambda_is_read_on_its_own_even_beside_another_on_the_line():
    # Objax read the whole line and gave both lambdas all three names; here each lambda
    # gets only what its own body uses.
    f1, f2 = (lambda x: x * global_w.value), (lambda y: global_net(y))
    assert names(f1) == ["global_w"]
    assert names(f2) == ["global_net.(Sequential)[0](Linear).b",
                         "global_net.(Sequential)[0](Linear).w"]


def test_lambda_containing_a_lambda_on_its_line_reads_both_bodies():
    # Both lambdas start on this line; the outer one is picked by its code's positions.
    outer = lambda x: (lambda y: y * global_w.value)(x) + holder.inner.v.value
    assert names(outer) == ["global_w", "holder.inner.v"]


def test_lambda_returned_by_a_lambda_on_the_same_line_reads_only_its_body():
    make = lambda: (lambda y: y * global_w.value, holder.inner.v.value)
    inner, _ = make()
    assert names(inner) == ["global_w"]


def test_lambda_inside_a_multiline_call_is_found():
    pair = tuple([
        lambda x: x * global_w.value,
    ])
    assert names(pair[0]) == ["global_w"]


def test_lambdas_and_functions_defined_inside_are_read():
    def f(x):
        inner = lambda z: global_net(z)

        def helper():
            return holder.inner.v.value

        return inner(x) + helper()

    assert names(f) == ["global_net.(Sequential)[0](Linear).b",
                        "global_net.(Sequential)[0](Linear).w", "holder.inner.v"]


def test_parameters_and_locals_hide_globals():
    # Objax 1.8 returned ['global_w'] for the first function: it did not see that the
    # parameter hides the global. A local name never refers to the global.
    def by_parameter(global_w):
        return global_w

    def by_assignment():
        global_w = 1.0
        return global_w

    def by_inner_parameter():
        return (lambda global_w: global_w)(1.0)

    def by_comprehension():
        return [global_w for global_w in range(3)]

    for fn in (by_parameter, by_assignment, by_inner_parameter, by_comprehension):
        assert names(fn) == [], fn.__name__


def test_global_declaration_reaches_the_module_global():
    def f():
        global global_w
        return global_w.value

    assert names(f) == ["global_w"]


def test_comprehension_body_sees_outer_names():
    def f():
        return [global_w.value * i for i in range(3)]

    assert names(f) == ["global_w"]


class Net(bridge.Module):
    def __init__(self):
        self.lin = bridge.nn.Linear(2, 1)

    def __call__(self, x):
        return self.lin(x)

    def loss(self, x):
        return (self(x) ** 2).mean() + global_w.value.sum()


def test_bound_method_resolves_self_to_its_object():
    # Objax 1.8 found nothing here: `self` was an unknown parameter.
    net = Net()
    assert dict(find_used_variables(net.loss)) == {**net.vars(scope="self."),
                                                   "global_w": global_w}


def test_variables_of_called_helpers_are_not_found():
    def helper(x):
        return x * global_w.value

    def f(x):
        return helper(x)

    assert names(f) == []


def test_wrapper_modules_name_their_variables_like_their_vars():
    gv = bridge.GradValues(lambda x: global_net(x).sum(), global_net.vars())

    def step(x):
        return gv(x)

    assert dict(find_used_variables(step)) == dict(gv.vars(scope="gv."))


@pytest.mark.parametrize("fn", [
    functools.partial(lambda x: x, 1),
    Net(),
    print,
])
def test_objects_without_python_source_are_refused(fn):
    with pytest.raises(ValueError, match="find_used_variables needs a Python function"):
        find_used_variables(fn)


def test_function_without_source_file_is_refused():
    namespace = {}
    exec("def f():\n    return 1\n", namespace)
    with pytest.raises(ValueError, match="source of 'f'"):
        find_used_variables(namespace["f"])


def test_reexported_under_objax_paths():
    assert bridge.util.find_used_variables is find_used_variables
    assert bridge.util.tracing.find_used_variables is find_used_variables
