"""Privacy analysis of DP-SGD (Objax's ``objax.privacy.dpsgd`` functions), computed with
Google's ``dp-accounting`` package.

DP-SGD with sampling rate ``q`` (batch size / dataset size), noise multiplier ``σ`` and
``steps`` steps is the ``steps``-fold composition of the sampled Gaussian mechanism. Its
Rényi differential privacy (RDP) at each order ``α`` is computed by ``dp-accounting``'s RDP
accountant, composed by multiplying by ``steps``, and converted to an ``(ε, δ)`` guarantee
by minimising over the orders. Two sampling schemes:

* Poisson sampling (each example joins a batch independently with probability ``q``),
  add-or-remove-one neighbouring datasets: ``analyze_renyi``, ``analyze_dp``;
* a fixed-size batch drawn without replacement, replace-one neighbouring datasets:
  ``analyze_renyi_sample_without_replacement``, ``analyze_dp_sample_without_replacement``.

Needs the ``privacy`` extra: ``pip install 'jax-bridge[privacy]'`` (``dp-accounting>=0.4``);
it is imported on first use, so ``import bridge`` works without it.

Example::

    from bridge.privacy import dpsgd
    eps = dpsgd.analyze_dp(q=256 / 60000, noise_multiplier=1.1, steps=60 * 235,
                           delta=1e-5)                                  # about 2.6
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from bridge._optional import import_optional

__all__ = ["analyze_dp", "convert_renyidp_to_dp", "analyze_renyi",
           "analyze_dp_sample_without_replacement", "analyze_renyi_sample_without_replacement",
           "analyze_heterogeneous_renyi", "DEFAULT_ORDERS"]

Orders = Union[float, Sequence[float]]

# The RDP orders ``analyze_dp`` minimises over by default (the same as Objax's).
DEFAULT_ORDERS = (1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5) + tuple(
    float(a) for a in range(5, 21))


def _dp_accounting() -> Any:
    return import_optional("dp_accounting", "privacy", "bridge.privacy.dpsgd's privacy analysis",
                           "dp-accounting")


def _check(q: float, noise_multiplier: float, steps: Any = 0) -> None:
    if not 0 <= q <= 1:
        raise ValueError(f"The sampling rate q must be in [0, 1], got {q}.")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
    if not steps >= 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")


def _rdp_of_one_step(q: float, noise_multiplier: float, orders: np.ndarray,
                     without_replacement: bool) -> np.ndarray:
    """RDP of one sampled Gaussian mechanism at each of ``orders``."""
    dpa = _dp_accounting()
    if q == 0:
        return np.zeros(len(orders))
    if noise_multiplier == 0:  # nothing hides the sampled examples
        return np.full(len(orders), np.inf)
    gaussian = dpa.GaussianDpEvent(noise_multiplier)
    if without_replacement:
        # Only the ratio q = sample / population enters the bound; as_integer_ratio gives
        # integers whose ratio is exactly q.
        sample, population = float(q).as_integer_ratio()
        event = dpa.SampledWithoutReplacementDpEvent(population, sample, gaussian)
        relation = dpa.NeighboringRelation.REPLACE_ONE
    else:
        event = dpa.PoissonSampledDpEvent(q, gaussian)
        relation = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE
    return dpa.rdp.RdpAccountant(list(orders), relation).compose(event).rdp


def _renyi(q: float, noise_multiplier: float, steps: float, orders: Orders,
           without_replacement: bool) -> Union[float, np.ndarray]:
    _check(q, noise_multiplier, steps)
    scalar = np.isscalar(orders)
    per_step = _rdp_of_one_step(q, noise_multiplier, np.atleast_1d(orders).astype(float),
                                without_replacement)
    rdp = per_step * steps
    return float(rdp[0]) if scalar else rdp


def analyze_renyi(q: float, noise_multiplier: float, steps: float,
                  orders: Orders) -> Union[float, np.ndarray]:
    """RDP of DP-SGD with Poisson sampling, at each order.

    Args:
      q: the sampling rate, in ``[0, 1]``.
      noise_multiplier: the noise standard deviation divided by the clipping norm.
      steps: the number of steps (the per-step RDP is multiplied by it).
      orders: one RDP order ``α > 1`` or a sequence of them.

    Returns:
      A float for a single order, else an array with one RDP value per order (``inf``
      where the mechanism gives no guarantee, e.g. ``noise_multiplier=0``).

    Example::

        analyze_renyi(0.01, 1.1, 100, [2, 3.5, 32])   # array([0.0129, 0.0231, 846.9])
    """
    return _renyi(q, noise_multiplier, steps, orders, without_replacement=False)


def analyze_renyi_sample_without_replacement(q: float, noise_multiplier: float, steps: float,
                                             orders: Orders) -> Union[float, np.ndarray]:
    """RDP of DP-SGD with fixed-size batches drawn without replacement (``q`` = batch size /
    dataset size; datasets are neighbours when they differ in one replaced example).

    Arguments and return value as for ``analyze_renyi``.
    """
    return _renyi(q, noise_multiplier, steps, orders, without_replacement=True)


def analyze_heterogeneous_renyi(sampling_probabilities: Sequence[float],
                                noise_multipliers: Sequence[float],
                                steps_list: Sequence[float],
                                orders: Orders) -> Union[float, np.ndarray]:
    """RDP of a training run made of phases with different Poisson-sampled settings.

    Args:
      sampling_probabilities, noise_multipliers, steps_list: one entry per phase.
      orders: as for ``analyze_renyi``.

    Returns:
      The sum over phases of ``analyze_renyi(q, noise_multiplier, steps, orders)``.

    Raises:
      ValueError: the three sequences have different lengths.
    """
    lengths = {len(sampling_probabilities), len(noise_multipliers), len(steps_list)}
    if len(lengths) != 1:
        raise ValueError(
            f"analyze_heterogeneous_renyi: {len(sampling_probabilities)} sampling "
            f"probabilities, {len(noise_multipliers)} noise multipliers and "
            f"{len(steps_list)} step counts; give one of each per phase.")
    return sum((analyze_renyi(q, z, steps, orders)
                for q, z, steps in zip(sampling_probabilities, noise_multipliers, steps_list)),
               start=0.0 if np.isscalar(orders) else np.zeros(len(orders)))


def convert_renyidp_to_dp(orders: Orders, rdp: Union[float, Sequence[float]],
                          target_eps: Optional[float] = None,
                          target_delta: Optional[float] = None) -> tuple[float, float, float]:
    """The ``(ε, δ)``-DP guarantee implied by RDP values, at the best order.

    Give exactly one of ``target_eps`` (then ``δ`` is computed) and ``target_delta`` (then
    ``ε`` is computed). The conversion is ``dp-accounting``'s (Proposition 12 of
    Canonne, Kamath and Steinke 2020, with the KL-divergence bound for small RDP).

    Args:
      orders: the RDP orders.
      rdp: the RDP value at each order (as ``analyze_renyi`` returns).
      target_eps: the ``ε`` to compute ``δ`` for.
      target_delta: the ``δ`` to compute ``ε`` for.

    Returns:
      ``(eps, delta, optimal_order)``.

    Raises:
      ValueError: neither or both targets given, or ``orders`` and ``rdp`` differ in length.

    Example::

        orders = [2, 4, 8, 16, 32]
        eps, delta, order = convert_renyidp_to_dp(
            orders, analyze_renyi(0.02, 1.0, 500, orders), target_delta=1e-5)   # 3.86, 1e-5, 4
    """
    if (target_eps is None) == (target_delta is None):
        raise ValueError("convert_renyidp_to_dp: give exactly one of target_eps and "
                         f"target_delta (got target_eps={target_eps}, "
                         f"target_delta={target_delta}).")
    orders_vec, rdp_vec = np.atleast_1d(orders), np.atleast_1d(rdp)
    if len(orders_vec) != len(rdp_vec):
        raise ValueError(f"convert_renyidp_to_dp: {len(orders_vec)} orders but "
                         f"{len(rdp_vec)} RDP values.")
    accountant = _dp_accounting().rdp.rdp_privacy_accountant
    if target_eps is not None:
        delta, order = accountant.compute_delta(orders_vec, rdp_vec, target_eps)
        return target_eps, float(delta), order
    eps, order = accountant.compute_epsilon(orders_vec, rdp_vec, target_delta)
    return float(eps), target_delta, order


def _analyze(q: float, noise_multiplier: float, steps: float, orders: Orders, delta: float,
             without_replacement: bool) -> float:
    _check(q, noise_multiplier, steps)
    if noise_multiplier == 0:
        return math.inf
    rdp = _renyi(q, noise_multiplier, steps, orders, without_replacement)
    eps, _, _ = convert_renyidp_to_dp(orders, rdp, target_delta=delta)
    return eps


def analyze_dp(q: float, noise_multiplier: float, steps: float,
               orders: Orders = DEFAULT_ORDERS, delta: float = 1e-5) -> float:
    """The ``ε`` of ``(ε, δ)``-DP for DP-SGD with Poisson sampling.

    Args:
      q: the sampling rate (batch size / dataset size), in ``[0, 1]``.
      noise_multiplier: the noise standard deviation divided by the clipping norm (the
        ``noise_multiplier`` of ``PrivateGradValues``).
      steps: the number of training steps.
      orders: the RDP orders to optimise over.
      delta: the target ``δ``.

    Returns:
      ``ε`` (``inf`` when ``noise_multiplier`` is 0).

    Example::

        analyze_dp(q=256 / 60000, noise_multiplier=1.1, steps=60 * 235)   # 2.60
    """
    return _analyze(q, noise_multiplier, steps, orders, delta, without_replacement=False)


def analyze_dp_sample_without_replacement(q: float, noise_multiplier: float, steps: float,
                                          orders: Orders = DEFAULT_ORDERS,
                                          delta: float = 1e-5) -> float:
    """The ``ε`` of ``(ε, δ)``-DP for DP-SGD with fixed-size batches drawn without
    replacement (replace-one neighbouring datasets).

    Arguments and return value as for ``analyze_dp``.
    """
    return _analyze(q, noise_multiplier, steps, orders, delta, without_replacement=True)
