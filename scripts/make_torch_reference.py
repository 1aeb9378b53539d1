"""Write tests/interop/data/resnet18_torch_logits.npy: PyTorch's ResNet-18 logits for the
weights ``torch_resnet18_state_dict(seed=0)`` on a fixed input.

The tests compare the Linen and object-style ResNet-18 of tests/interop/models/resnet18.py,
loaded with the same weights, to these logits without needing PyTorch.

* weights: ``torch_resnet18_state_dict(seed=0)`` (10 classes), loaded with
  ``load_state_dict(strict=True)``;
* input: ``np.random.default_rng(1).standard_normal((2, 3, 64, 64))`` as float32, NCHW
  (not stored: the tests draw it again);
* output: float32 logits of shape (2, 10), evaluation mode.

The ResNet-18 below is written here, with torchvision's architecture and module names
(torchvision itself is not needed). Run it in an environment that has PyTorch and the
project's Flax extra (tests/interop/models/resnet18.py imports Flax and bridge)::

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch numpy safetensors jax "flax>=0.12" optax msgpack
    /tmp/torch-venv/bin/python scripts/make_torch_reference.py

The repository root is put on ``sys.path``, so bridge need not be installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "interop" / "models" / "resnet18.py"
OUTPUT = ROOT / "tests" / "interop" / "data" / "resnet18_torch_logits.npy"
WEIGHTS_SEED = 0
INPUT_SEED = 1
INPUT_SHAPE = (2, 3, 64, 64)


def load_models() -> ModuleType:
    """tests/interop/models/resnet18.py, imported by path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("resnet18_models", MODELS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reference_input() -> np.ndarray:
    """The input of the fixture: (2, 3, 64, 64) float32, NCHW."""
    return np.random.default_rng(INPUT_SEED).standard_normal(INPUT_SHAPE).astype(np.float32)


class BasicBlock(nn.Module):
    def __init__(self, nin: int, nout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nin, nout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(nout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(nout, nout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(nout)
        self.downsample = None
        if stride != 1 or nin != nout:
            self.downsample = nn.Sequential(
                nn.Conv2d(nin, nout, 1, stride=stride, bias=False), nn.BatchNorm2d(nout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` architecture and ``state_dict`` names."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for n, (nin, nout, stride) in enumerate(stages, start=1):
            setattr(self, f"layer{n}", nn.Sequential(BasicBlock(nin, nout, stride),
                                                     BasicBlock(nout, nout, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_model(state_dict: dict[str, np.ndarray], num_classes: int = 10) -> ResNet18:
    """The PyTorch ResNet-18 with ``state_dict`` loaded strictly, in evaluation mode."""
    model = ResNet18(num_classes)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
                          strict=True)
    return model.eval()


def torch_logits(state_dict: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Evaluation-mode logits of the PyTorch ResNet-18 with ``state_dict``, float32."""
    model = torch_model(state_dict)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    state_dict = load_models().torch_resnet18_state_dict(seed=WEIGHTS_SEED)
    logits = torch_logits(state_dict, reference_input())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, logits)
    print(f"torch {torch.__version__}: wrote {args.output} {logits.shape} {logits.dtype}, "
          f"max |logit| {np.abs(logits).max():.4f}")


if __name__ == "__main__":
    main()
