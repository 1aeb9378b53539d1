"""The shared shape of every wrapper: a module whose variables mirror a library's tree.

``FlaxModule``, ``NNXModule`` and ``HaikuModule`` each hold one bridge variable per leaf of
the wrapped model's variables, in the tree's own (sorted) leaf order, named after the
leaf's path (``params/Dense_0/kernel``). Keeping that order lets a call rebuild the tree
with a precomputed treedef, and the names follow the contract the converters read.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax

from bridge.state import BaseVar, Module, VarCollection
from bridge.state._access import commit, set_label

__all__ = ["TreeModule", "key_name", "path_name", "path_parts"]


def key_name(entry: Any) -> str:
    """One step of a pytree path as text: a dict key, a sequence index or an attribute."""
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_parts(path: Sequence[Any]) -> tuple[str, ...]:
    """``('params', 'Dense_0', 'kernel')``; the ``.value`` of a metadata box
    (``nn.Partitioned``) is not part of it."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    return tuple(key_name(k) for k in path)


def path_name(path: Sequence[Any]) -> str:
    """``params/Dense_0/kernel`` (``path_parts`` joined: a part may itself hold '/')."""
    return "/".join(path_parts(path))


class TreeModule(Module):
    """Base class of wrappers: ``_names[i]`` is the tree path of variable ``_leaves[i]``.

    ``vars()`` lists them as ``(WrapperClass).<path>``, followed by the wrapper's ordinary
    attributes (its ``rng``).
    """

    _names: list[str]
    _leaves: list[BaseVar]

    def _set_leaves(self, named: Sequence[tuple[str, BaseVar]]) -> None:
        self._names = [name for name, _ in named]
        self._leaves = [var for _, var in named]
        for name, var in named:
            set_label(var, f"({type(self).__name__}).{name}")

    def _commit_call(self, changed: Mapping[int, Any], next_key: Optional[Any] = None) -> None:
        """Write what one call changed, all or nothing: ``{leaf index: new value}`` and,
        when the call drew random numbers, the next key of ``self.rng``."""
        targets = [self._leaves[i] for i in changed]
        names = [self._names[i] for i in changed]
        new = list(changed.values())
        if next_key is not None:
            targets.append(self.rng)
            names.append("rng")
            new.append(next_key)
        if targets:
            commit(targets, new, owner=type(self).__name__, names=names)

    def vars(self, scope: str = "") -> VarCollection:
        prefix = f"{scope}({type(self).__name__})."
        vc = VarCollection((prefix + name, v) for name, v in zip(self._names, self._leaves))
        vc.update(super().vars(scope))  # ``rng`` and anything a subclass adds
        return vc
