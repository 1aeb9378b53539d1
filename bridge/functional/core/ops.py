"""Array operations (Objax's ``functional.core.ops``)."""

from bridge.functional._ops import (
    dynamic_slice,
    flatten,
    interpolate,
    one_hot,
    pad,
    rsqrt,
    scan,
    stop_gradient,
    top_k,
    upsample_2d,
    upscale_nn,
)

__all__ = ["dynamic_slice", "flatten", "interpolate", "one_hot", "pad", "rsqrt", "scan",
           "stop_gradient", "top_k", "upsample_2d", "upscale_nn"]
