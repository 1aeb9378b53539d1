"""PyTorch ``state_dict`` <-> ``VarCollection``: the fourth scheme's converters.

Names follow the module tree as PyTorch writes it (``layer1.0.conv1.weight``: attributes
by name, list and ``Sequential`` items by index); layouts as ``bridge.interop._torch``
reads them (``weight`` ``(out, in)`` -> ``Linear.w`` ``(in, out)``, ``(out, in, kh, kw)``
-> ``Conv2D.w`` ``(kh, kw, in, out)``, batch-norm ``running_mean``/``running_var``).
"""

from __future__ import annotations

from typing import Any, Mapping

from bridge.interop import _engine, _port, _torch
from bridge.interop._engine import LoadReport, RulesArg
from bridge.state import VarCollection

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]


def to_torch_state_dict(vc: VarCollection) -> dict[str, Any]:
    """The PyTorch ``state_dict`` of ``vc``: ``{'layer1.0.conv1.weight': array, ...}``.

    Batch norms also get ``num_batches_tracked`` (0), which PyTorch's strict
    ``load_state_dict`` expects. Save it with ``bridge.interop.save_safetensors``.

    Example::

        sd = bridge.interop.to_torch_state_dict(model.vars())
        bridge.interop.save_safetensors(sd, "model.safetensors")
    """
    return _torch.write_torch(_port.read_bridge(vc).values)


def load_torch_state_dict(vc: VarCollection, state_dict: Mapping[str, Any], strict: bool = True,
                          rules: RulesArg = None) -> LoadReport:
    """Assign a PyTorch ``state_dict`` (names and layouts translated) to ``vc``.

    ``num_batches_tracked`` entries are left out. Strictness, dtype rule and report are
    those of ``bridge.flax.load_linen_variables``; entries are named by their PyTorch-
    derived path (``layer1/0/conv1/kernel``).

    Example::

        sd = bridge.interop.load_safetensors("resnet18.safetensors")
        bridge.interop.load_torch_state_dict(model.vars(), sd)
    """
    hub, _dropped = _torch.read_torch(state_dict)
    flat = {"/".join(map(str, (*path, leaf))): value for (_, path, leaf), value in hub.items()}
    return _engine.load(vc, flat, "torch", strict, rules, "load_torch_state_dict")
