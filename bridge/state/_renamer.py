"""``Renamer``: how variable names are rewritten (``VarCollection.rename``, checkpoint loads)."""

from __future__ import annotations

import re
from typing import Callable, Mapping, Optional, Pattern, Sequence, Union

__all__ = ["RenameRules", "Renamer", "as_rename_function"]

RenameRules = Union[Callable[[str], str], Mapping[str, str],
                    Sequence[tuple[Union[str, Pattern[str]], str]]]


class Renamer:
    """Rewrites names by rules (Objax's ``objax.util.Renamer``).

    Args:
      rules: one of
        - a ``{substring: replacement}`` mapping, applied in one pass: every occurrence of
          any key is replaced at once, so a replacement is never renamed again
          (``{'a': 'b', 'b': 'a'}`` swaps the two letters); at a position where several
          keys match, the one listed first wins;
        - a sequence of ``(regex, replacement)`` pairs (patterns as strings or compiled),
          applied one after the other with ``re.sub``;
        - a function ``str -> str``.
      chain: another ``Renamer`` applied to the result.

    Example::

        rename = Renamer({'(Conv2D)': '(MyConv2D)'})
        rename('(Sequential)[0](Conv2D).w')            # '(Sequential)[0](MyConv2D).w'
        vc.rename(rename)                              # same variables, new names
        Renamer([(r'\\[(\\d+)\\]', r'.layer\\1')])('(Sequential)[0].w')   # '(Sequential).layer0.w'
    """

    def __init__(self, rules: RenameRules, chain: Optional[Renamer] = None):
        self.chain = chain
        if callable(rules):
            self._rename = rules
        elif isinstance(rules, Mapping):
            replacements = dict(rules)
            if replacements:
                any_key = re.compile("|".join(map(re.escape, replacements)))
                self._rename = lambda name: any_key.sub(
                    lambda match: replacements[match.group(0)], name)
            else:
                self._rename = lambda name: name
        else:
            compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]

            def in_order(name: str) -> str:
                for pattern, replacement in compiled:
                    name = pattern.sub(replacement, name)
                return name

            self._rename = in_order

    def __call__(self, name: str) -> str:
        renamed = self._rename(name)
        return self.chain(renamed) if self.chain is not None else renamed


def as_rename_function(rules: Optional[RenameRules]) -> Callable[[str], str]:
    """``rules`` as a function of the name: the identity for ``None``, a ``Renamer`` or any
    other callable as it is, a mapping or a rule sequence through ``Renamer``."""
    if rules is None:
        return lambda name: name
    if callable(rules):
        return rules
    return Renamer(rules)
