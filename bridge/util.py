"""Objax's ``objax.util`` names that object-style code relies on.

Only ``Renamer`` lives here (it is defined in the state layer, next to
``VarCollection.rename`` which uses it); the rest of Objax's ``util`` module was internal
plumbing.
"""

from bridge.state import Renamer

__all__ = ["Renamer"]
