"""The DP-SGD privacy analysis of ``bridge.privacy.dpsgd`` against numbers computed with
Objax 1.8 (``objax.privacy.dpsgd``, jax 0.4.30) and against ``dp-accounting`` used directly.

Objax computes fractional RDP orders with an older series than ``dp-accounting`` (whose
bound is slightly larger, i.e. more conservative); integer orders and the
without-replacement analysis use the same formulas and agree to rounding.
"""

import sys

import numpy as np
import pytest

from bridge.privacy import dpsgd

dp_accounting = pytest.importorskip("dp_accounting")

INTEGER_ORDERS = [2, 3, 4, 8, 16, 32]


def test_analyze_dp_matches_objax_on_the_mnist_setting():
    # Objax 1.8: analyze_dp(256 / 60000, 1.1, 60 * 235) (delta 1e-5, default orders).
    assert dpsgd.analyze_dp(256 / 60000, 1.1, 60 * 235) == pytest.approx(2.600718138942953,
                                                                         rel=1e-9)


def test_analyze_dp_full_batch_matches_objax():
    # Objax 1.8: analyze_dp(1.0, 2.0, 10) = 8.087861628831664.
    assert dpsgd.analyze_dp(1.0, 2.0, 10) == pytest.approx(8.087861628831664, rel=1e-12)


def test_analyze_dp_is_at_least_objax_when_a_fractional_order_wins():
    # Objax 1.8: analyze_dp(0.01, 1.1, 10000) = 5.638749942592472, reached at a fractional
    # order where dp-accounting's bound is slightly larger.
    eps = dpsgd.analyze_dp(0.01, 1.1, 10000)
    assert 5.638749942592472 <= eps <= 5.638749942592472 * (1 + 1e-5)


def test_analyze_dp_equals_dp_accounting_rdp_accountant():
    q, z, steps, delta = 0.02, 0.9, 3000, 1e-6
    accountant = dp_accounting.rdp.RdpAccountant(list(dpsgd.DEFAULT_ORDERS))
    accountant.compose(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(z)), steps)
    assert dpsgd.analyze_dp(q, z, steps, delta=delta) == pytest.approx(
        accountant.get_epsilon(delta), rel=1e-12)


def test_analyze_dp_without_noise_is_infinite():
    assert dpsgd.analyze_dp(0.01, 0.0, 100) == np.inf
    assert dpsgd.analyze_dp_sample_without_replacement(0.01, 0.0, 100) == np.inf


def test_analyze_renyi_integer_orders_match_objax():
    # Objax 1.8: analyze_renyi(0.01, 1.1, 100, [2, 3.5, 32]) and (0.02, 1.0, 500, ...).
    rdp = dpsgd.analyze_renyi(0.01, 1.1, 100, [2, 32])
    np.testing.assert_allclose(rdp, [1.2851008160514807e-02, 8.4694164336759263e+02],
                               rtol=1e-9)
    rdp = dpsgd.analyze_renyi(0.02, 1.0, 500, [2, 4, 8, 16, 32])
    np.testing.assert_allclose(rdp, [3.4353832008052027e-01, 7.6880441109296016e-01,
                                     6.0593934218956411e+00, 1.9135957261707790e+03,
                                     5.9808913520379565e+03], rtol=1e-9)


def test_analyze_renyi_fractional_orders_are_at_least_objax():
    # Objax 1.8: analyze_renyi(0.01, 1.1, 100, 3.5) and (..., 4.5).
    objax = {3.5: 2.3114550947582635e-02, 4.5: 0.03030393494246534}
    for order, value in objax.items():
        ours = dpsgd.analyze_renyi(0.01, 1.1, 100, order)
        assert isinstance(ours, float)
        assert value <= ours <= value * (1 + 1e-4)


def test_analyze_renyi_edge_cases_match_objax():
    # Objax 1.8: q = 1 gives alpha / (2 sigma^2) per step; q = 0 gives 0.
    np.testing.assert_allclose(dpsgd.analyze_renyi(1.0, 2.0, 10, [2, 8]), [2.5, 10.0])
    np.testing.assert_array_equal(dpsgd.analyze_renyi(0.0, 2.0, 10, [2, 8]), [0.0, 0.0])


def test_analyze_renyi_scales_with_steps():
    one = dpsgd.analyze_renyi(0.05, 1.3, 1, INTEGER_ORDERS)
    np.testing.assert_allclose(dpsgd.analyze_renyi(0.05, 1.3, 250, INTEGER_ORDERS), 250 * one,
                               rtol=1e-12)


def test_without_replacement_matches_objax():
    # Objax 1.8: analyze_renyi_sample_without_replacement(0.01, 1.1, 100, [2, 3.5, 32, 300]),
    # analyze_dp_sample_without_replacement(0.01, 1.1, 10000) and (0.1, 0.8, 1000, delta=1e-6).
    rdp = dpsgd.analyze_renyi_sample_without_replacement(0.01, 1.1, 100, [2, 3.5, 32, 300])
    np.testing.assert_allclose(rdp, [4.5693226930741800e-02, 8.4610263265150781e-02,
                                     8.4917760201533167e+02, 1.1934868827379085e+04],
                               rtol=1e-9)
    assert dpsgd.analyze_dp_sample_without_replacement(0.01, 1.1, 10000) == pytest.approx(
        11.771715000199933, rel=1e-9)
    assert dpsgd.analyze_dp_sample_without_replacement(0.1, 0.8, 1000, delta=1e-6) == \
        pytest.approx(103.56219603612405, rel=1e-9)


def test_without_replacement_equals_dp_accounting_with_integer_sizes():
    # A batch of 250 from 60000 examples, as dp-accounting's own event describes it.
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        60000, 250, dp_accounting.GaussianDpEvent(1.2))
    accountant = dp_accounting.rdp.RdpAccountant(
        INTEGER_ORDERS, dp_accounting.NeighboringRelation.REPLACE_ONE).compose(event, 40)
    np.testing.assert_allclose(
        dpsgd.analyze_renyi_sample_without_replacement(250 / 60000, 1.2, 40, INTEGER_ORDERS),
        accountant.rdp, rtol=1e-12)


def test_convert_renyidp_to_dp_matches_objax():
    orders = [2, 4, 8, 16, 32]
    rdp = [3.4353832008052027e-01, 7.6880441109296016e-01, 6.0593934218956411e+00,
           1.9135957261707790e+03, 5.9808913520379565e+03]
    # Objax 1.8: (3.856666039924625, 1e-05, 4) and (2.0, 0.0026243360580529337, 4).
    eps, delta, order = dpsgd.convert_renyidp_to_dp(orders, rdp, target_delta=1e-5)
    assert (eps, delta, order) == (pytest.approx(3.856666039924625, rel=1e-12), 1e-5, 4)
    eps, delta, order = dpsgd.convert_renyidp_to_dp(orders, rdp, target_eps=2.0)
    assert (eps, delta, order) == (2.0, pytest.approx(0.0026243360580529337, rel=1e-12), 4)


def test_convert_renyidp_to_dp_needs_exactly_one_target():
    with pytest.raises(ValueError, match="exactly one of target_eps and target_delta"):
        dpsgd.convert_renyidp_to_dp([2], [0.1])
    with pytest.raises(ValueError, match="exactly one of target_eps and target_delta"):
        dpsgd.convert_renyidp_to_dp([2], [0.1], target_eps=1.0, target_delta=1e-5)
    with pytest.raises(ValueError, match="2 orders but 1 RDP values"):
        dpsgd.convert_renyidp_to_dp([2, 3], [0.1], target_delta=1e-5)


def test_heterogeneous_renyi_matches_objax():
    # Objax 1.8: privacyaccountant.analyze_heterogeneous_renyi([0.01, 0.02], [1.1, 1.5],
    # [100, 50], [2, 8, 32]).
    rdp = dpsgd.privacyaccountant.analyze_heterogeneous_renyi([0.01, 0.02], [1.1, 1.5],
                                                              [100, 50], [2, 8, 32])
    np.testing.assert_allclose(rdp, [2.4042225585727668e-02, 1.0708075554833105e-01,
                                     1.0005889615031903e+03], rtol=1e-9)
    with pytest.raises(ValueError, match="one of each per phase"):
        dpsgd.analyze_heterogeneous_renyi([0.01], [1.1, 1.5], [100], [2])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\], got 1.5"):
        dpsgd.analyze_dp(1.5, 1.0, 10)
    with pytest.raises(ValueError, match="noise_multiplier must be >= 0, got -1"):
        dpsgd.analyze_renyi(0.1, -1, 10, [2])
    with pytest.raises(ValueError, match="steps must be >= 0"):
        dpsgd.analyze_dp_sample_without_replacement(0.1, 1.0, -3)


def test_missing_dp_accounting_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)   # makes the import fail
    with pytest.raises(ImportError, match=r"jax-bridge\[privacy\]"):
        dpsgd.analyze_dp(0.01, 1.1, 100)


def test_objax_privacy_names_are_exported():
    # objax.privacy.dpsgd's names (Objax 1.8): PrivateGradValues and privacyaccountant's __all__.
    assert {"PrivateGradValues", "analyze_dp", "analyze_dp_sample_without_replacement",
            "analyze_renyi", "analyze_renyi_sample_without_replacement",
            "convert_renyidp_to_dp"} <= set(dpsgd.__all__)
