"""Differentially private gradients (DP-SGD) on pytrees: clip per example, average, add noise.

``clipped_grad(loss_fn, l2_norm_clip, ...)`` computes

    mean over microbatches u of  clip(grad loss_fn(params, microbatch_u))  +  N(0, σ²)

with ``clip(g) = g * l2_norm_clip / max(‖g‖, l2_norm_clip)`` (``‖g‖`` is the global L2
norm over every leaf of ``params``) and ``σ = noise_multiplier * l2_norm_clip /
number_of_microbatches``, the Gaussian mechanism of DP-SGD (Abadi et al. 2016) as Objax's
``PrivateGradValues`` defines it.

How it avoids the memory wall
-----------------------------

The obvious way, ``vmap(grad)``, materialises one gradient per microbatch: ``B`` copies
of every parameter, which is memory-bound (a 784-256-256-10 MLP at batch 128 writes and
reads about 140 MB of gradients per step). Most parameters of common models never need that:

* a parameter ``W`` used exactly once, as an operand of a ``dot_general`` without batch
  dimensions (a dense layer ``a @ W``), has the per-microbatch gradient
  ``g_u = Σ_f a_{u,f} ⊗ δ_{u,f}`` where ``a`` is the layer's other operand, ``δ`` the
  gradient of the loss with respect to the layer's output, and ``f`` runs over the
  operand's free (non-contracted) positions: for one example and a dense layer a single
  outer product, whose norm is ``‖a_u‖·‖δ_u‖``. With several free positions (a
  microbatch, or a sequence) the norm comes from the Gram matrices,
  ``‖g_u‖² = Σ_{f,f'} (a_f·a_f')(δ_f·δ_f')``, or from materialising ``g_u`` for that
  layer when that is cheaper;
* the weighted mean ``Σ_u w_u g_u / U`` of such a parameter is one contraction of ``a``
  with ``w ⊙ δ``: the same matrix product the ordinary backward pass does.

So the computation is: one forward pass that records the ``a``'s, one backward pass that
gives every ``δ`` at once (the gradient of ``Σ_u loss_u`` with respect to zero-valued
perturbations added to the outputs of those ``dot_general``s; microbatches are
independent, so that gradient holds each microbatch's own ``δ``), then the norms and the
reweighted contractions. Parameters that do not fit the rule (used twice, inside a
convolution, a ``scan``, a custom derivative, ...) get per-microbatch gradients from the
same backward pass by giving each microbatch its own copy of just those leaves; only they
are materialised. The rule is found generically on the ``jaxpr`` of the loss (no layer
classes); ``plan`` reports the decision per leaf. ``method='materialize'`` forces the
plain ``vmap(grad)`` computation, which is also used when no leaf fits the rule.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from bridge.pure._gradients import _group, _require_scalar, _split_aux, split_loss

__all__ = ["clipped_grad", "plan"]

# How a parameter leaf's per-microbatch gradient norm is obtained (see ``plan``).
OUTER = "outer"              # from a dense layer's input and output gradient, never formed
MATERIALIZE = "materialize"  # per-microbatch gradients of this leaf are formed
UNUSED = "unused"            # the loss does not use the leaf: zero gradient

_INLINED_CALLS = ("jit", "pjit", "closed_call", "core_call")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

def clipped_grad(loss_fn: Callable, l2_norm_clip: float, microbatch: int = 1,
                 batch_axis: Optional[Sequence[Optional[int]]] = None,
                 noise_multiplier: float = 0.0, has_aux: bool = False,
                 method: str = "auto") -> Callable:
    """The clipped (and noised) mean gradient of DP-SGD, without per-example gradients
    where the model allows it.

    Args:
      loss_fn: ``loss_fn(params, *data)`` written for ONE microbatch: every batched
        argument keeps its batch axis, of size ``microbatch`` (1 by default). It returns
        the scalar loss, or a tuple/list whose first element is the loss and whose other
        elements are extra values (``grad_values`` conventions); with ``has_aux``,
        ``(output, aux)``.
      l2_norm_clip: ``C >= 0``; each microbatch gradient ``g`` (all leaves of ``params``
        together) is scaled by ``C / max(‖g‖₂, C)``, i.e. to norm at most ``C`` and
        unchanged when already within it (Objax's convention; no epsilon is added).
        ``C = 0`` clips every gradient to zero (the result is then pure noise, of
        standard deviation 0).
      microbatch: examples per microbatch; the batch size must be a multiple.
      batch_axis: one entry per ``data`` argument (not ``params``, which is shared): the
        batch axis of that argument, or ``None`` for an argument every microbatch sees
        whole. Default: axis 0 of every argument.
      noise_multiplier: ``z``; Gaussian noise of standard deviation
        ``z * C / number_of_microbatches`` is added to every gradient entry: one draw
        for all leaves, in the gradient's dtype, a deterministic function of ``key``
        (Threefry-2x32 for JAX's default keys; see ``_noise``). ``0`` adds nothing (and
        needs no key).
      has_aux: ``loss_fn`` returns ``(output, aux)``; ``aux`` is returned per microbatch
        (stacked on a new leading axis), not differentiated.
      method: ``'auto'`` (norms from activations where possible, see the module
        docstring) or ``'materialize'`` (``vmap(grad)``, then clip and average).

    Returns:
      ``g(params, *data, key=None) -> (grads, values)`` (``(grads, values, aux)`` with
      ``has_aux``): ``grads`` has the structure of ``params`` and is the mean over
      microbatches of the clipped gradients, plus noise; ``values`` is the list of what
      ``loss_fn`` returned (``[loss, *extras]``), each averaged over microbatches.

    Raises:
      TypeError: the loss is not a scalar.
      ValueError: bad ``batch_axis``, a batch size that is not a multiple of
        ``microbatch``, or noise requested without a ``key``.

    Example::

        loss = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
            mlp(p, x), y).mean()
        private = jax.jit(bridge.pure.clipped_grad(loss, l2_norm_clip=1.0,
                                                   noise_multiplier=1.1))
        grads, (mean_loss,) = private(params, x, y, key=jax.random.key(0))
    """
    if method not in ("auto", "materialize"):
        raise ValueError(f"method must be 'auto' or 'materialize', got {method!r}.")
    if isinstance(l2_norm_clip, (int, float)) and not l2_norm_clip >= 0:
        raise ValueError(f"l2_norm_clip must be >= 0, got {l2_norm_clip}.")
    if int(microbatch) != microbatch or microbatch < 1:
        raise ValueError(f"microbatch must be a positive integer, got {microbatch}.")
    unit = _unit_function(loss_fn, has_aux)

    def g(params: Any, *data: Any, key: Any = None):
        if noise_multiplier != 0 and key is None:
            raise ValueError("clipped_grad: noise_multiplier is not 0, so a PRNG key is "
                             "needed: call g(params, *data, key=key).")
        grouped, axes, units = _microbatches(data, batch_axis, microbatch)
        program = _analyse(unit, params, grouped, axes) if method == "auto" else None
        if program is not None and program.any_outer:
            grads, values, aux = _clipped_outer(program, params, grouped, axes, units,
                                                l2_norm_clip)
        else:
            grads, values, aux = _clipped_materialized(unit, params, grouped, axes, units,
                                                       l2_norm_clip)
        if noise_multiplier != 0:
            grads = _add_noise(grads, key, noise_multiplier * l2_norm_clip / units)
        values = [jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), v) for v in values]
        return (grads, values, aux) if has_aux else (grads, values)

    return g


def plan(loss_fn: Callable, params: Any, *data: Any, microbatch: int = 1,
         batch_axis: Optional[Sequence[Optional[int]]] = None, has_aux: bool = False) -> Any:
    """How ``clipped_grad(loss_fn, ...)`` (``method='auto'``) treats each parameter leaf.

    Returns a pytree shaped like ``params`` whose leaves are ``'outer'`` (norm from the
    layer's input and output gradient; per-microbatch gradients never formed),
    ``'materialize'`` (per-microbatch gradients of this leaf are formed) or ``'unused'``.
    When no leaf is ``'outer'``, ``clipped_grad`` runs the plain ``vmap(grad)`` path.

    Example::

        bridge.pure._privacy.plan(loss, params, x, y)
        # [{'b': 'materialize', 'w': 'outer'}, ...] for a dense network
    """
    grouped, axes, _ = _microbatches(data, batch_axis, microbatch)
    program = _analyse(_unit_function(loss_fn, has_aux), params, grouped, axes)
    return jax.tree_util.tree_unflatten(program.params_tree, program.kinds)


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

def _unit_function(loss_fn: Callable, has_aux: bool) -> Callable:
    """``loss_fn`` as ``unit(params, *data) -> (loss, values, aux)``."""

    def unit(params: Any, *data: Any):
        output, aux = _split_aux(loss_fn(params, *data), has_aux)
        loss, values = split_loss(output)
        _require_scalar(loss)
        return loss, values, aux

    return unit


def _microbatches(data: tuple, batch_axis, microbatch: int):
    """Group every batched argument into ``(units, microbatch)`` on its batch axis."""
    axes = tuple(batch_axis) if batch_axis is not None else (0,) * len(data)
    if len(axes) != len(data):
        raise ValueError(f"batch_axis={axes} has {len(axes)} entries for {len(data)} data "
                         "arguments (one entry per argument after params, an axis or None).")
    sizes = {leaf.shape[a] for x, a in zip(data, axes) if a is not None
             for leaf in jax.tree_util.tree_leaves(x)}
    if not sizes:
        raise ValueError(f"batch_axis={axes}: no data argument has a batch axis.")
    if len(sizes) > 1:
        raise ValueError(f"The batched arguments disagree on the batch size: {sorted(sizes)}.")
    (n,) = sizes
    grouped = tuple(x if a is None else _group(x, a, microbatch) for x, a in zip(data, axes))
    return grouped, axes, n // microbatch


def _clip_factors(sq_norms: jax.Array, l2_norm_clip: Any) -> jax.Array:
    """``C / max(‖g‖, C)`` per microbatch, from the squared norms.

    Written as a select so that ``C = 0`` is defined: a zero gradient keeps factor 1 (it
    is within the bound) instead of computing ``0 / 0``.
    """
    norms = jnp.sqrt(sq_norms)
    return jnp.where(norms > l2_norm_clip, l2_norm_clip / norms, 1.0)


# A constant folded into the caller's key before the noise is drawn, so that the noise
# stream is separate from anything else derived from that key ("DPSG" in ASCII).
_NOISE_STREAM = 0x44505347


def _add_noise(grads: Any, key: Any, stddev: Any) -> Any:
    """``grads`` plus ``_noise(grads, key, stddev)``, leaf by leaf."""
    return jax.tree_util.tree_map(jnp.add, grads, _noise(grads, key, stddev))


def _noise(like: Any, key: Any, stddev: Any) -> Any:
    """The Gaussian noise ``clipped_grad`` adds: ``N(0, stddev²)`` per entry of ``like``.

    Returns a pytree with the structure, shapes and dtypes of ``like`` (only its leaves'
    shapes and dtypes are read). It is a deterministic function of ``key`` and of those
    shapes and dtypes: the same key gives the same random bits and the same noise, bit
    for bit in a given compiled function; eager and ``jax.jit`` results can differ by a
    float32 rounding of the final scaling (XLA fuses it differently).

    Which generator draws it: the key is first moved to a stream of its own,
    ``jax.random.fold_in(key, 0x44505347)``. For a Threefry key (JAX's default: a raw
    ``jax.random.PRNGKey`` or ``jax.random.key(seed)``), every real floating leaf of at
    most 32 bits is drawn in one go, as one float32 sample of the total size, from
    Threefry-2x32 (20 rounds; the hash of JAX's default generator, Salmon et al. 2011)
    in counter mode: block ``t`` hashes the counter ``(0, t)`` into two words, and the
    sample uses all first words, then all second words. The hash is written out here
    (``_threefry2x32``, equal to ``jax.extend.random.threefry2x32_p``) because XLA:CPU
    runs JAX's own lowering of it, a rolled loop, about twice as slowly. The top 23 bits
    ``k`` of a word give the uniform ``u = (2k + 1) / 2²³ - 1`` in ``(-1, 1)`` (exact,
    symmetric) and ``√2 · erfinv(u)`` is the normal sample (``jax.random.normal``'s
    transform). The sample is cut into the leaves in leaf order, scaled by ``stddev``
    in float32 and cast to each leaf's dtype (float32, bfloat16, float16).

    Keys of another implementation draw the float32 sample with one
    ``jax.random.normal`` call instead. Leaves of other dtypes (float64, complex) get
    one ``jax.random.normal`` each, in their dtype, from ``fold_in(stream key, index)``.
    """
    leaves, tree = jax.tree_util.tree_flatten(like)
    key = jax.random.fold_in(key, _NOISE_STREAM)
    shapes = [jnp.shape(leaf) for leaf in leaves]
    dtypes = [jnp.result_type(leaf) for leaf in leaves]
    joint = [i for i, d in enumerate(dtypes)
             if jnp.issubdtype(d, jnp.floating) and jnp.dtype(d).itemsize <= 4]
    total = sum(math.prod(shapes[i]) for i in joint)
    out: list = [None] * len(leaves)
    if joint:
        flat = stddev * _standard_normal_f32(key, total)
        offset = 0
        for i in joint:
            size = math.prod(shapes[i])
            out[i] = flat[offset:offset + size].reshape(shapes[i]).astype(dtypes[i])
            offset += size
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        if out[i] is None:
            out[i] = stddev * jax.random.normal(jax.random.fold_in(key, i), shape, dtype)
    return jax.tree_util.tree_unflatten(tree, out)


def _standard_normal_f32(key: Any, size: int) -> jax.Array:
    """``size`` independent float32 standard normal samples, deterministic in ``key``."""
    typed = key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) \
        else jax.random.wrap_key_data(key)
    # Counter mode: block t = 0, 1, ..., blocks - 1 hashes the counter (0, t) into two
    # words; all first words, then all second words, padded to a round count (XLA:CPU
    # is much slower on odd sizes). Counters are 32-bit: past 2^32 blocks, fall back.
    blocks = -(-size // 2048) * 1024
    if str(jax.random.key_impl(typed)) != "threefry2x32" or blocks > 2 ** 32:
        return jax.random.normal(typed, (size,), jnp.float32)
    data = jax.random.key_data(typed)
    counter = jax.lax.iota(jnp.uint32, blocks)
    # The concatenation also makes XLA materialise the words once; consumed directly,
    # the hash is fused into (and recomputed by) every consumer of the words.
    words = jnp.concatenate(_threefry2x32(data[0], data[1], jnp.zeros_like(counter),
                                          counter))[:size]
    # The top 23 bits k give u = (2k + 1 - 2^23) / 2^23: 2^23 equally likely values in
    # (-1, 1), symmetric about 0, never -1 or 1. The odd integer 2k + 1 - 2^23 is formed
    # in int32 and converts exactly, and the scale is a power of two, so no float
    # rounding (or compiler reassociation) can move u onto -1 or 1.
    odd = (words >> 9).astype(jnp.int32) * 2 + (1 - 2 ** 23)
    u = odd.astype(jnp.float32) * np.float32(2.0 ** -23)
    return np.float32(math.sqrt(2)) * jax.lax.erf_inv(u)


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
    """The Threefry-2x32 hash with 20 rounds (Salmon et al. 2011), as JAX's default PRNG
    uses it: key words ``k0, k1`` (uint32 scalars), counter words ``x0, x1`` (uint32
    arrays); returns the two output words. Equal to ``jax.extend.random.threefry2x32_p``
    (tested), but unrolled, which XLA:CPU fuses into one kernel."""
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
            x1 = x1 ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _per_unit_sq_norm(stacked: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(stacked.reshape(stacked.shape[0], -1)), axis=1)


def _weighted_mean(weights: jax.Array, stacked: jax.Array) -> jax.Array:
    mean = jnp.tensordot(weights, stacked, axes=1) / weights.shape[0]
    return mean.astype(stacked.dtype)


# --------------------------------------------------------------------------------------
# The materialised path: vmap(grad), clip, mean
# --------------------------------------------------------------------------------------

def _clipped_materialized(unit, params, grouped, axes, units, l2_norm_clip):
    def one(p, *data):
        def loss(p_):
            l, values, aux = unit(p_, *data)
            return l, (values, aux)

        grads, (values, aux) = jax.grad(loss, has_aux=True)(p)
        return grads, values, aux

    grads, values, aux = jax.vmap(one, in_axes=(None,) + axes)(params, *grouped)
    leaves, tree = jax.tree_util.tree_flatten(grads)
    weights = _clip_factors(sum(_per_unit_sq_norm(g) for g in leaves), l2_norm_clip)
    mean = [_weighted_mean(weights, g) for g in leaves]
    return jax.tree_util.tree_unflatten(tree, mean), values, aux


# --------------------------------------------------------------------------------------
# The jaxpr of one microbatch's loss, flattened, and which leaves fit the outer rule
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Lit:
    """A literal operand of an operation."""
    val: Any


@dataclass
class _Op:
    prim: Any
    params: dict
    ins: list           # slot numbers (int) or _Lit
    outs: list          # slot numbers
    in_avals: list
    out_avals: list


@dataclass
class _Dense:
    """A parameter leaf used once as an operand of a ``dot_general`` (no batch dims)."""
    op: int             # index of the operation in the program
    side: int           # 0: the leaf is the lhs, 1: the rhs
    other_contract: tuple   # contracted dims of the other operand, paired with ...
    leaf_contract: tuple    # ... these contracted dims of the leaf
    other_shape: tuple
    leaf_shape: tuple
    out_shape: tuple
    out_dtype: Any


@dataclass
class _Program:
    ops: list
    consts: list                    # (slot, value)
    param_slots: list
    data_slots: list
    out_refs: list
    out_tree: Any
    params_tree: Any
    kinds: list = field(default_factory=list)    # per param leaf
    dense: dict = field(default_factory=dict)    # param leaf index -> _Dense

    @property
    def any_outer(self) -> bool:
        return bool(self.dense)


def _analyse(unit, params, grouped, axes) -> _Program:
    """Trace one microbatch's loss and decide, per parameter leaf, how to get its norm."""
    unit_data = tuple(
        x if a is None else jax.tree_util.tree_map(lambda leaf, a=a: _drop_axis(leaf, a), x)
        for x, a in zip(grouped, axes))
    closed, out_shape = jax.make_jaxpr(unit, return_shape=True)(params, *unit_data)
    p_leaves, params_tree = jax.tree_util.tree_flatten(params)
    program = _flatten(closed, len(p_leaves))
    program.out_tree = jax.tree_util.tree_structure(out_shape)
    program.params_tree = params_tree

    uses: dict[int, list] = {s: [] for s in program.param_slots}
    for i, op in enumerate(program.ops):
        for position, ref in enumerate(op.ins):
            if isinstance(ref, int) and ref in uses:
                uses[ref].append((i, position))
    for ref in program.out_refs:
        if isinstance(ref, int) and ref in uses:
            uses[ref].append((None, None))

    for leaf_index, slot in enumerate(program.param_slots):
        found = uses[slot]
        dense = _as_dense(program, found[0], jnp.shape(p_leaves[leaf_index])) \
            if len(found) == 1 and jnp.issubdtype(jnp.result_type(p_leaves[leaf_index]),
                                                  jnp.inexact) else None
        if not found:
            program.kinds.append(UNUSED)
        elif dense is not None:
            program.kinds.append(OUTER)
            program.dense[leaf_index] = dense
        else:
            program.kinds.append(MATERIALIZE)
    return program


def _drop_axis(leaf: Any, axis: int) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(leaf)
    shape = tuple(aval.shape[:axis]) + tuple(aval.shape[axis + 1:])
    return jax.ShapeDtypeStruct(shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _as_dense(program: _Program, use: tuple, leaf_shape: tuple) -> Optional[_Dense]:
    op_index, position = use
    if op_index is None:
        return None
    op = program.ops[op_index]
    if op.prim.name != "dot_general" or position not in (0, 1):
        return None
    (lhs_c, rhs_c), (lhs_b, rhs_b) = op.params["dimension_numbers"]
    if lhs_b or rhs_b:
        return None
    contract = (tuple(lhs_c), tuple(rhs_c))
    other = 1 - position
    out = op.out_avals[0]
    return _Dense(op=op_index, side=position, other_contract=contract[other],
                  leaf_contract=contract[position], other_shape=tuple(op.in_avals[other].shape),
                  leaf_shape=tuple(leaf_shape), out_shape=tuple(out.shape), out_dtype=out.dtype)


def _flatten(closed, n_params: int) -> _Program:
    """The jaxpr as a flat list of operations on numbered slots.

    Calls to jitted sub-functions that receive a parameter leaf directly are inlined, so
    that a dense layer inside a ``jax.jit``-decorated helper is still recognised; other
    calls (and custom-derivative calls) stay single operations.
    """
    counter = itertools.count()
    ops: list[_Op] = []
    consts: list = []
    param_slots: set = set()

    def visit(jaxpr, const_values, in_refs):
        env: dict = {}
        for var, value in zip(jaxpr.constvars, const_values):
            slot = next(counter)
            consts.append((slot, value))
            env[var] = slot
        for var, ref in zip(jaxpr.invars, in_refs):
            env[var] = ref

        def read(atom):
            return _Lit(atom.val) if isinstance(atom, jcore.Literal) else env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(a) for a in eqn.invars]
            sub = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
            if (eqn.primitive.name in _INLINED_CALLS and isinstance(sub, jcore.ClosedJaxpr)
                    and any(isinstance(r, int) and r in param_slots for r in ins)):
                outs = visit(sub.jaxpr, sub.consts, ins)
            else:
                outs = [next(counter) for _ in eqn.outvars]
                ops.append(_Op(eqn.primitive, eqn.primitive.get_bind_params(eqn.params), ins,
                               outs, [a.aval for a in eqn.invars],
                               [v.aval for v in eqn.outvars]))
            for var, ref in zip(eqn.outvars, outs):
                if not isinstance(var, jcore.DropVar):
                    env[var] = ref
        return [read(a) for a in jaxpr.outvars]

    in_slots = [next(counter) for _ in closed.jaxpr.invars]
    param_slots.update(in_slots[:n_params])
    out_refs = visit(closed.jaxpr, closed.consts, in_slots)
    return _Program(ops=ops, consts=consts, param_slots=in_slots[:n_params],
                    data_slots=in_slots[n_params:], out_refs=out_refs, out_tree=None,
                    params_tree=None)


def _run(program: _Program, param_values: list, data_values: list, perturbations: dict):
    """Evaluate the program, adding ``perturbations[i]`` to the output of operation ``i``.

    Returns the program's outputs and, for each perturbed operation, its operands (the
    layer input and the kernel)."""
    env: dict = dict(program.consts)
    env.update(zip(program.param_slots, param_values))
    env.update(zip(program.data_slots, data_values))

    def read(ref):
        return ref.val if isinstance(ref, _Lit) else env[ref]

    operands = {}
    for i, op in enumerate(program.ops):
        inputs = [read(r) for r in op.ins]
        out = op.prim.bind(*inputs, **op.params)
        outs = list(out) if op.prim.multiple_results else [out]
        if i in perturbations:
            outs[0] = outs[0] + perturbations[i]
            operands[i] = inputs
        env.update(zip(op.outs, outs))
    return [read(r) for r in program.out_refs], operands


# --------------------------------------------------------------------------------------
# The fast path: norms from layer inputs and output gradients, one backward pass
# --------------------------------------------------------------------------------------

def _clipped_outer(program: _Program, params, grouped, axes, units, l2_norm_clip):
    p_leaves = jax.tree_util.tree_leaves(params)
    dense = program.dense
    tiled_index = [i for i, k in enumerate(program.kinds) if k == MATERIALIZE]
    # One perturbation per dot_general (both of its operands may be dense leaves).
    layer_ops = {d.op: d for d in dense.values()}
    zeros = {op: jnp.zeros((units,) + d.out_shape, d.out_dtype) for op, d in layer_ops.items()}
    tiled = {i: jnp.broadcast_to(p_leaves[i], (units,) + jnp.shape(p_leaves[i]))
             for i in tiled_index}

    def one(perturbation, own, shared, *data):
        values = list(shared)
        for i, v in own.items():
            values[i] = v
        outs, operands = _run(program, values, jax.tree_util.tree_leaves(data), perturbation)
        loss, rest, aux = jax.tree_util.tree_unflatten(program.out_tree, outs)
        inputs = {i: operands[d.op][1 - d.side] for i, d in dense.items()}
        return loss, (rest, aux, inputs)

    batched = jax.vmap(one, in_axes=(0, 0, None) + axes)
    losses, pullback, (values, aux, inputs) = jax.vjp(
        lambda z, t: batched(z, t, p_leaves, *grouped), zeros, tiled, has_aux=True)
    out_grads, tiled_grads = pullback(jnp.ones_like(losses))

    layers = {i: _dense_factors(d, inputs[i], out_grads[d.op]) for i, d in dense.items()}
    sq_norm = sum(_dense_sq_norm(a, d) for a, d in layers.values())
    sq_norm = sq_norm + sum(_per_unit_sq_norm(g) for g in tiled_grads.values())
    weights = _clip_factors(sq_norm, l2_norm_clip)

    grads = []
    for i, leaf in enumerate(p_leaves):
        if i in dense:
            grads.append(_dense_weighted_grad(dense[i], *layers[i], weights, leaf))
        elif i in tiled_grads:
            grads.append(_weighted_mean(weights, tiled_grads[i]))
        else:
            grads.append(jnp.zeros_like(leaf))
    return jax.tree_util.tree_unflatten(program.params_tree, grads), values, aux


def _dense_factors(d: _Dense, a: jax.Array, delta: jax.Array):
    """The layer input as ``(U, F, K)`` and its output gradient as ``(U, F, N)``.

    ``F`` runs over the free positions of the input (rows of a microbatch, tokens, ...),
    ``K`` over the contracted features (in the leaf's contracted-dims order) and ``N``
    over the leaf's own output features, so the microbatch gradient of the leaf is
    ``Σ_f a[:, f, :, None] * delta[:, f, None, :]`` reshaped to the leaf.
    """
    units = a.shape[0]
    a_free = [k for k in range(len(d.other_shape)) if k not in d.other_contract]
    a = jnp.transpose(a, [0] + [k + 1 for k in a_free] + [k + 1 for k in d.other_contract])
    free = math.prod(d.other_shape[k] for k in a_free)
    a = a.reshape(units, free, -1)
    n_leaf_free = len(d.leaf_shape) - len(d.leaf_contract)
    if d.side == 0:  # output dims: (leaf free..., other free...) -> (other free..., leaf free...)
        n_other_free = len(a_free)
        perm = ([0] + [1 + n_leaf_free + k for k in range(n_other_free)]
                + [1 + k for k in range(n_leaf_free)])
        delta = jnp.transpose(delta, perm)
    return a, delta.reshape(units, free, -1)


def _dense_sq_norm(a: jax.Array, delta: jax.Array) -> jax.Array:
    """Per unit ``‖Σ_f a_f ⊗ δ_f‖²`` without forming it when that is cheaper."""
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    delta = delta.astype(jnp.promote_types(delta.dtype, jnp.float32))
    _, free, k = a.shape
    n = delta.shape[2]
    if free == 1:
        return jnp.sum(jnp.square(a), axis=(1, 2)) * jnp.sum(jnp.square(delta), axis=(1, 2))
    if free * (k + n) <= k * n:
        gram_a = jnp.einsum("ufk,ugk->ufg", a, a)
        gram_d = jnp.einsum("ufn,ugn->ufg", delta, delta)
        return jnp.sum(gram_a * gram_d, axis=(1, 2))
    return _per_unit_sq_norm(jnp.einsum("ufk,ufn->ukn", a, delta))


def _dense_weighted_grad(d: _Dense, a: jax.Array, delta: jax.Array, weights: jax.Array,
                         leaf: jax.Array) -> jax.Array:
    """``Σ_u w_u g_u / U`` for a dense leaf: one contraction, reshaped to the leaf."""
    units = a.shape[0]
    scale = (weights / units).astype(delta.dtype)
    if a.shape[2] < delta.shape[2]:
        a = a * scale.astype(a.dtype)[:, None, None]
    else:
        delta = delta * scale[:, None, None]
    g = jnp.einsum("ufk,ufn->kn", a, delta)
    leaf_free = [k for k in range(len(d.leaf_shape)) if k not in d.leaf_contract]
    order = list(d.leaf_contract) + leaf_free
    g = g.reshape([d.leaf_shape[k] for k in order])
    return jnp.transpose(g, np.argsort(order)).astype(jnp.result_type(leaf))
