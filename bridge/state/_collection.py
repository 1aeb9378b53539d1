"""``VarCollection``: a dictionary of named variables, as ``Module.vars()`` returns it."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

import jax
import numpy as np

from bridge.state._access import commit
from bridge.state._renamer import RenameRules, as_rename_function
from bridge.state._variables import AssignmentError, BaseVar, TrainRef

__all__ = ["VarCollection"]

TypeFilter = Union[type, tuple[type, ...], None]


class VarCollection(dict):
    """Named variables: ``{'(Sequential)[0](Linear).w': TrainVar, ...}``.

    Names follow the module tree (``(Class).attribute``, ``(ModuleList)[index]``). The
    same variable may appear under several names (shared weights); iterating the
    collection yields each variable once, in insertion order, and a ``TrainRef`` whose
    target is also in the collection is the same variable as that target. ``tensors()``
    and ``assign()`` follow that iteration order.

    Example::

        vc = model.vars()
        print(vc)                               # a table with sizes, shapes and +Total
        train = vc.subset(bridge.TrainVar)
        values = train.tensors()                # list of arrays
        train.assign([v * 0 for v in values])   # all-or-nothing
    """

    def __init__(self, entries: Union[Mapping[str, BaseVar], Iterable[tuple[str, BaseVar]]] = (),
                 **kwargs: BaseVar):
        super().__init__()
        self.update(entries, **kwargs)

    # ----- iteration ------------------------------------------------------------------
    def __iter__(self) -> Iterator[BaseVar]:  # type: ignore[override]
        """Each variable once, in insertion order (see the class docstring)."""
        values = list(self.values())
        targets = {id(v) for v in values if not isinstance(v, TrainRef)}
        seen: set[int] = set()
        for v in values:
            key = id(v._storage())
            if key in seen or (isinstance(v, TrainRef) and key in targets):
                continue
            seen.add(key)
            yield v

    def names(self) -> dict[int, str]:
        """``{id(storage): first name}`` for the variables this collection iterates."""
        out: dict[int, str] = {}
        for name, v in self.items():
            out.setdefault(id(v._storage()), name)
        return out

    # ----- building -------------------------------------------------------------------
    def update(self, other: Union[Mapping[str, BaseVar], Iterable[tuple[str, BaseVar]]] = (),
               **kwargs: BaseVar) -> None:
        """Add entries; a name already bound to a *different* variable is an error."""
        items = list(dict(other, **kwargs).items())
        problems = [f"  {k!r}: got {type(v).__name__}, not a variable" for k, v in items
                    if not isinstance(v, BaseVar)]
        problems += [f"  {k!r}: a name must be a str, got {type(k).__name__}"
                     for k, _ in items if not isinstance(k, str)]
        if problems:
            raise TypeError("A VarCollection maps names to variables (TrainVar, StateVar, "
                            "...); nothing was added because:\n" + "\n".join(problems))
        conflicts = [k for k, v in items if k in self and self[k] is not v]
        if conflicts:
            raise ValueError(
                "Name conflict: these names already refer to other variables: "
                + ", ".join(conflicts)
                + ". Rename one side with `vc.rename(...)` before merging."
            )
        for k, v in items:
            dict.__setitem__(self, k, v)

    def __setitem__(self, name: str, var: BaseVar) -> None:
        """``vc[name] = var``; rebinding a name to a *different* variable is an error."""
        self.update({name: var})

    def __add__(self, other: Mapping[str, BaseVar]) -> VarCollection:
        """Merge two collections into a new one (name conflicts raise ``ValueError``)."""
        out = VarCollection(self)
        out.update(other)
        return out

    def subset(self, is_a: TypeFilter = None, is_not: TypeFilter = None) -> VarCollection:
        """The entries that are instances of ``is_a`` and not of ``is_not``.

        Example: ``vc.subset(bridge.TrainVar)``, ``vc.subset(is_not=bridge.RandomState)``.
        """
        return VarCollection(
            (k, v) for k, v in self.items()
            if (is_a is None or isinstance(v, is_a))
            and (is_not is None or not isinstance(v, is_not))
        )

    def rename(self, renamer: RenameRules) -> VarCollection:
        """A new collection with renamed keys (same variables).

        ``renamer`` is a ``Renamer``, a function of the name, a ``{substring: replacement}``
        mapping (one pass, as ``Renamer``), or a sequence of ``(regex, replacement)`` pairs
        applied in order.

        Example::

            model.vars().rename({'(Sequential)': '(Net)'})
        """
        rename = as_rename_function(renamer)
        out = VarCollection()
        out.update((rename(k), v) for k, v in self.items())
        return out

    # ----- values ---------------------------------------------------------------------
    def tensors(self, is_a: TypeFilter = None) -> list[jax.Array]:
        """The values of the variables, in iteration order (each variable once)."""
        return [v.value for v in self if is_a is None or isinstance(v, is_a)]

    def assign(self, tensors: Sequence[Any]) -> None:
        """Assign ``tensors`` to the variables, in iteration order, all or nothing.

        Raises:
          AssignmentError: the number of tensors differs, or any shape/dtype differs; the
            message lists every mismatch and no variable is changed. (It is a
            ``ValueError`` and, as Objax's assertion was, an ``AssertionError``.)
        """
        variables = list(self)
        tensors = list(tensors)
        if len(tensors) != len(variables):
            raise AssignmentError(
                f"VarCollection.assign: expected {len(variables)} tensors (one per variable), "
                f"got {len(tensors)}. Nothing was assigned."
            )
        names = self.names()
        commit(variables, tensors, owner="VarCollection.assign",
               names=[names[id(v._storage())] for v in variables])

    def replicate(self):
        """A context manager: inside it, every variable holds one copy per device.

        Used around ``bridge.Parallel`` calls, as in Objax::

            with model.vars().replicate():
                loss = parallel_train_step(x, y)

        On exit each variable is set back to a single value with its ``reduce`` (the mean
        over devices by default). See ``bridge.state._replicate``.
        """
        from bridge.state._replicate import replicate

        return replicate(self)

    # ----- display --------------------------------------------------------------------
    def __str__(self, max_width: int = 100) -> str:
        """Objax's table: name, size, shape per entry, then ``+Total(entries)`` and size.

        As in Objax, a shared variable is listed, and counted, under each of its names.
        """
        width = min(max_width, max([len(k) for k in self.keys()] + [20]))
        lines, total = [], 0
        for name, v in self.items():
            value = v._storage()._value
            size = int(np.prod(value.shape))
            lines.append(f"{name:{width}} {size:8d} {tuple(value.shape)}")
            total += size
        lines.append(f"{f'+Total({len(self)})':{width}} {total:8d}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"VarCollection({dict.__repr__(self)})"


def as_collection(variables: Any, what: str = "variables") -> VarCollection:
    """Accept a collection, a mapping of variables, a variable, or a sequence of them.

    ``None`` is an empty collection. A module is refused with the call to write instead
    (``model.vars()``), since passing the model itself is the usual slip.
    """
    if isinstance(variables, VarCollection):
        return variables
    if variables is None:
        return VarCollection()
    if callable(getattr(variables, "vars", None)) and not isinstance(variables, Mapping):
        raise TypeError(f"{what}: expected a VarCollection, got the {type(variables).__name__} "
                        "module itself; pass its variables: `model.vars()`.")
    if isinstance(variables, BaseVar):
        return VarCollection({"[0]": variables})
    if isinstance(variables, Mapping):
        return VarCollection(variables)
    if isinstance(variables, Iterable) and not isinstance(variables, (str, bytes)):
        return VarCollection((f"[{i}]", v) for i, v in enumerate(variables))
    raise TypeError(f"{what}: expected a VarCollection, a variable, or a sequence or dict of "
                    f"variables, got {type(variables).__name__}.")
