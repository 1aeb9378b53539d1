"""DP-SGD, under Objax's module path ``objax.privacy.dpsgd``.

* ``PrivateGradValues`` (module ``gradient``): clipped, noised gradients of a loss;
* the privacy analysis (module ``privacyaccountant``, needs the ``privacy`` extra):
  ``analyze_dp`` and ``analyze_renyi`` (Poisson sampling), their
  ``..._sample_without_replacement`` variants, ``analyze_heterogeneous_renyi`` and
  ``convert_renyidp_to_dp``.
"""

from bridge.privacy.dpsgd import gradient, privacyaccountant
from bridge.privacy.dpsgd.gradient import PrivateGradValues
from bridge.privacy.dpsgd.privacyaccountant import (
    DEFAULT_ORDERS,
    analyze_dp,
    analyze_dp_sample_without_replacement,
    analyze_heterogeneous_renyi,
    analyze_renyi,
    analyze_renyi_sample_without_replacement,
    convert_renyidp_to_dp,
)

__all__ = [
    "DEFAULT_ORDERS",
    "PrivateGradValues",
    "analyze_dp",
    "analyze_dp_sample_without_replacement",
    "analyze_heterogeneous_renyi",
    "analyze_renyi",
    "analyze_renyi_sample_without_replacement",
    "convert_renyidp_to_dp",
    "gradient",
    "privacyaccountant",
]
