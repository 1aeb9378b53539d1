"""``objax.io.checkpoint``: the module path Objax code uses for ``Checkpoint``."""

from bridge.checkpoint import Checkpoint

__all__ = ["Checkpoint"]
