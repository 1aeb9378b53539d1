"""Plumbing shared by the examples (not part of the library): their optional
dependencies, progress bars, PNG figures and the digits data.

The examples' optional dependencies (matplotlib, tqdm, scikit-learn, flax, dm-haiku,
dp-accounting) are the ``examples`` extra. A missing one stops the example with one line
naming the extra, not a traceback (here wrapped)::

    quickstart.py needs scikit-learn (the digits data), which is not installed:
    pip install "jax-bridge[examples]"

Each example imports this file as ``_support`` (it sits next to them, so
``python examples/<name>.py`` finds it; an example loaded by path adds its folder to
``sys.path`` first).
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any, Iterable, Optional

INSTALL = 'pip install "jax-bridge[examples]"'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# import name -> distribution name, for the message
DISTRIBUTIONS = {"sklearn": "scikit-learn", "haiku": "dm-haiku",
                 "dp_accounting": "dp-accounting"}


class MissingDependency(SystemExit):
    """An optional dependency is not installed. A ``SystemExit`` whose message is one line:
    uncaught, Python prints it to stderr and exits with status 1, without a traceback."""


def missing_message(module: str, purpose: str, example: Optional[str] = None) -> str:
    """The one-line message for a missing ``module`` needed for ``purpose``."""
    example = example or "this example"
    name = DISTRIBUTIONS.get(module, module)
    return f"{example} needs {name} ({purpose}), which is not installed: {INSTALL}"


def require(module: str, purpose: str, example: Optional[str] = None) -> ModuleType:
    """``import module``, or raise ``MissingDependency`` with the one-line message.

    ``module`` is a top-level package name (``"sklearn"``, ``"haiku"``); ``purpose`` says
    what the example needs it for; ``example`` is the example's file name.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(missing_message(module, purpose, example)) from None


def optional(module: str, purpose: str, example: Optional[str] = None,
             file: Any = None) -> Optional[ModuleType]:
    """``import module``, or print the one-line message (to stderr) and return ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print(missing_message(module, purpose, example), file=file or sys.stderr)
        return None


# ----- progress bars ---------------------------------------------------------------------------
def progress(iterable: Optional[Iterable] = None, total: Optional[int] = None,
             desc: Optional[str] = None, unit: str = "it", disable: bool = False,
             example: Optional[str] = None) -> Any:
    """A tqdm progress bar (on stderr) over ``iterable`` or ``range(total)``.

    Update its figures with ``bar.set_postfix(loss=...)``; print lines with ``say`` so that
    they do not break the bar.
    """
    tqdm = require("tqdm", "progress bars", example).tqdm
    if iterable is None:
        iterable = range(total)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                dynamic_ncols=True)


def say(line: str, file: Any = None) -> None:
    """Print ``line`` above a running progress bar (plain ``print`` without tqdm)."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(line, file=file, flush=True)
        return
    tqdm.write(line, file=file or sys.stdout)


# ----- figures ---------------------------------------------------------------------------------
def pyplot(example: Optional[str] = None) -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (it only writes files)."""
    matplotlib = require("matplotlib", "the plots", example)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as a PNG to ``path`` (creating its folder), close it, return ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def is_png(path: str) -> bool:
    """Whether ``path`` starts with the 8-byte PNG signature."""
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE


# ----- data ------------------------------------------------------------------------------------
def digits(test_size: float = 0.2, seed: int = 0, example: Optional[str] = None):
    """scikit-learn's 8x8 digits (1,797 images, shipped with the package: no download),
    split into train and test sets stratified by class.

    Returns ``(x_train, y_train, x_test, y_test)``: ``x`` float32 of shape ``(n, 64)`` with
    pixels scaled to ``[0, 1]``, ``y`` int32 labels 0-9.
    """
    require("sklearn", "the digits data", example)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test
