"""Loading named entries into variables: match, check everything, report, then commit.

The one engine behind every load of outside values into variables: checkpoint restores
(``bridge.checkpoint.restore`` / ``from_tree``) and the library converters
(``bridge.flax.load_linen_variables``, ``load_nnx_state``, ``bridge.haiku.load_haiku_params``).
The callers only describe what they have; naming schemes, layouts and file formats stay
with them:

``Target``
    a variable, the name reports give it, the entry names it takes, and optionally the
    shape and dtype an entry must hold and how an entry's value becomes the variable's;
``Entry``
    one incoming value: the name it is matched by, the name it is reported by, how to
    produce its value, and optionally what it holds (checked before producing it);
``plan``
    matches entries to targets and checks every pair; nothing is assigned;
``apply``
    raises one ``LoadMismatchError`` listing every problem (strict), or assigns what
    fits with one ``bridge.state._access.commit`` call and returns the ``LoadReport``.

Every value goes through the checks of ``commit`` (kind, shape, exact dtype, tracers) before
anything is assigned, so a load follows the library's one dtype rule: a float64 NumPy array
does not fit a float32 variable.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence

from bridge.state._access import commit, current
from bridge.state._variables import BaseVar, _is_array, mismatch, prepare

__all__ = ["Entry", "LoadMismatchError", "LoadReport", "Mismatch", "Plan", "Spec", "Target",
           "apply", "nearest", "plan", "shared_names"]

_NEAREST_LIMIT = 50  # listed names that get "nearest" suggestions in one message


# ----- what callers give -------------------------------------------------------------------
# Targets and entries are built afresh for every load (one per variable and per leaf), so
# they are NamedTuples: immutable, and much cheaper to build than frozen dataclasses.
class Spec(NamedTuple):
    """A shape and a dtype, for checks made before a value exists (``mismatch`` accepts it
    wherever it accepts an array). ``dtype`` may be a NumPy dtype or a name such as
    ``"float32"`` or ``"key<threefry2x32>"``, as long as both sides of a check agree."""

    shape: tuple[int, ...]
    dtype: Any


class Target(NamedTuple):
    """A variable to load.

    Attributes:
      var: the variable (a ``TrainRef`` loads its ``TrainVar``).
      name: how the report names it.
      keys: the entry names it takes (a variable listed under several names in a
        collection takes an entry under any of them; entries under two of them are
        reported, as only one can be loaded). The first is the name a missing variable
        is reported to expect.
      spec: the shape and dtype an entry must hold before ``convert`` (a ``Spec`` or an
        array); ``None``: no check before ``convert`` (the variable's own check follows).
      convert: turns an entry's value into the variable's (a layout, a user rule's
        inverse); ``None``: used as it is.
      uses: entry names consumed with it (values derived from its own, such as a Haiku
        EMA's ``hidden``), so they are neither loaded nor unexpected.
    """

    var: BaseVar
    name: str
    keys: tuple[str, ...]
    spec: Any = None
    convert: Optional[Callable[[Any], Any]] = None
    uses: tuple[str, ...] = ()


class Entry(NamedTuple):
    """One incoming value.

    Attributes:
      key: the name matched against the targets' ``keys`` (after any renaming).
      stored: the name the report gives it (as in the file or the tree).
      value: ``current value of the variable -> value to load`` (the current value tells
        where to put it, e.g. its sharding). Called only for an entry that matched.
      spec: what the entry holds, when known without producing it (a file record): checked
        against the target's ``spec`` first. ``None``: the produced value is checked.
      check: ``variable -> problem`` ('' when it fits): a check of kind (an ``nnx.Param``
        goes to a ``TrainVar``), made first.
    """

    key: str
    stored: str
    value: Callable[[Any], Any]
    spec: Any = None
    check: Optional[Callable[[BaseVar], str]] = None


# ----- what a load reports -----------------------------------------------------------------
class Mismatch(NamedTuple):
    """A variable whose entry could not be loaded: ``(variable name, reason)``.

    A plain pair (``name, reason = m``); ``str(m)`` is ``"name: reason"``.
    """

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class LoadReport:
    """What a load did (``bridge.interop`` converters, and, as ``RestoreReport``, checkpoints).

    Variables are named as their collection (or the caller) names them, entries as they
    are stored; each variable is in exactly one of ``loaded``, ``missing``, ``mismatched``.

    Attributes:
      loaded: names of the variables that were assigned (empty in the report of an error:
        nothing was assigned).
      missing: names of the variables whose entry is absent (left unchanged).
      unexpected: names (as stored) of the entries that no variable takes (ignored).
      mismatched: ``Mismatch(name, reason)`` pairs, variables whose entry is present but
        cannot be loaded (left unchanged): wrong shape, dtype or kind, a conversion that
        failed, several entries for the variable, an entry claimed by several variables.
      sources: ``{variable name: its entry's name as stored}`` (for a missing variable,
        the name that was expected), e.g. ``{'(Linear).w': 'params/Dense_0/kernel'}``.

    Example::

        report = bridge.flax.load_linen_variables(model.vars(), variables, strict=False)
        report.ok                # False
        name, reason = report.mismatched[0]
        # '(Linear).w', 'expected shape (3, 2), got (2, 3)'
        print(report.describe())
    """

    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Everything fitted: nothing missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Every name that was not loaded: missing, unexpected and mismatched."""
        return self.missing + self.unexpected + tuple(m.name for m in self.mismatched)

    def describe(self) -> str:
        """Every problem, one per line, grouped ('' when there is none).

        An entry is shown by its name as stored, followed by ``(for <variable>)`` when the
        variable's name differs; missing and unexpected names get the nearest names of the
        other group, which usually reveals a renaming::

            missing (1): expected by a variable, absent:
              params/out/bias  (for (Linear).b); nearest: 'params/out/biass'
            unexpected (1): no variable takes them:
              params/out/biass; nearest: 'params/out/bias'
            mismatched (1): wrong shape, dtype or type:
              params/out/kernel  (for (Linear).w): expected shape (3, 2), got (2, 3)
        """
        lines = []
        expected = [self.sources.get(name, name) for name in self.missing]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): expected by a variable, absent:")
            for i, (name, key) in enumerate(zip(self.missing, expected)):
                near = nearest(key, self.unexpected) if i < _NEAREST_LIMIT else ""
                lines.append(f"    {self._entry(name)}{near}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): no variable takes them:")
            for i, key in enumerate(self.unexpected):
                near = nearest(key, expected) if i < _NEAREST_LIMIT else ""
                lines.append(f"    {key}{near}")
        if self.mismatched:
            lines.append(f"  mismatched ({len(self.mismatched)}): wrong shape, dtype or type:")
            lines.extend(f"    {self._entry(m.name)}: {m.reason}" for m in self.mismatched)
        return "\n".join(lines)

    def _entry(self, name: str) -> str:
        key = self.sources.get(name, name)
        return name if key == name else f"{key}  (for {name})"


class LoadMismatchError(ValueError):
    """The entries do not fit the variables; nothing was assigned.

    ``report`` is the full ``LoadReport`` (every missing, unexpected and mismatched entry);
    the message is ``what``, then ``report.describe()``, then ``hint`` when some entries
    are missing and others unexpected (names that differ).
    """

    def __init__(self, report: LoadReport, what: str = "load", hint: str = ""):
        self.report, self.what, self.hint = report, what, hint
        text = (f"{what}: nothing was loaded because the entries do not fit the variables "
                "(pass strict=False to load the entries that fit):\n" + report.describe())
        if hint and report.missing and report.unexpected:
            text += "\n  " + hint
        super().__init__(text)

    def __reduce__(self):
        # Pickle (multiprocessing, pytest-xdist) rebuilds an exception from its ``args``,
        # the message alone here; rebuild it from the report instead.
        return type(self), (self.report, self.what, self.hint)


# ----- matching and checking ---------------------------------------------------------------
@dataclass
class Plan:
    """Every decision of a load, before anything is assigned (see ``plan``).

    ``loads`` pairs each target that fits with its checked value; ``conflicts`` counts
    entry names claimed by more than one target (a naming scheme that cannot be right).
    """

    loads: list[tuple[Target, Any]]
    missing: list[Target]
    unexpected: list[Entry]
    mismatched: list[Mismatch]
    sources: dict[str, str]
    conflicts: int

    @property
    def problems(self) -> int:
        """How many targets and entries do not fit."""
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)


def plan(targets: Sequence[Target], entries: Sequence[Entry]) -> Plan:
    """Match ``entries`` to ``targets`` and check every pair; assign nothing.

    A target takes the entry under any of its keys. A target is mismatched when it finds
    several entries (under two of its tied names, or entries renamed to one name) or when
    its entry name is claimed by other targets too; entries that no target takes are
    unexpected. Each matched pair is checked in order, stopping at the first problem: the
    entry's ``check``, its ``spec`` against the target's, the value produced (and
    converted) without raising, the produced value against the target's ``spec`` (when
    the entry gave none), and the checks ``commit`` makes.

    Example::

        p = plan([Target(model.w, "w", ("w",))], [Entry("w", "w", lambda like: w0)])
        p.problems                # 0
    """
    by_key: dict[str, list[Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    shared = shared_names((t.name, (*t.keys, *t.uses)) for t in targets)
    loads: list[tuple[Target, Any]] = []
    missing: list[Target] = []
    mismatched: list[Mismatch] = []
    sources: dict[str, str] = {}
    taken: set[int] = set()  # ids of the entries some target took or consumed
    for t in targets:
        found = [e for k in t.keys for e in by_key.get(k, ())]
        if not found:
            missing.append(t)
            sources[t.name] = t.keys[0]
            continue
        entry = found[0]
        sources[t.name] = entry.stored
        taken.update(map(id, found))
        for k in t.uses:
            taken.update(map(id, by_key.get(k, ())))
        rivals = [n for k in (entry.key, *t.uses) for n in shared.get(k, ()) if n != t.name]
        if len(found) > 1:
            problem = _several(found)
        elif rivals:
            problem = (f"its entry {entry.stored!r} is also claimed by {', '.join(rivals)}; "
                       "only one variable can take it")
        else:
            problem, value = _fit(t, entry)
        if problem:
            mismatched.append(Mismatch(t.name, problem))
        else:
            loads.append((t, value))
    unexpected = [e for e in entries if id(e) not in taken]
    conflicts = sum(len(names) - 1 for names in shared.values())
    return Plan(loads, missing, unexpected, mismatched, sources, conflicts)


def _several(found: list[Entry]) -> str:
    names = " and ".join(repr(e.stored) for e in found)
    if len({e.key for e in found}) > 1:
        return (f"{names} are entries of the same variable (its names are tied); only one "
                "can be loaded")
    return f"{names} are all named {found[0].key!r} after renaming; only one can be loaded"


def _fit(t: Target, entry: Entry) -> tuple[str, Any]:
    """``(problem, value)``: the checked value that ``commit`` will assign, or why not."""
    if entry.check is not None:
        problem = entry.check(t.var)
        if problem:
            return problem, None
    if entry.spec is not None and t.spec is not None and entry.spec != t.spec:
        problem = mismatch(t.spec, entry.spec)  # before reading or moving any data
        if problem:
            return problem, None
    try:
        value = entry.value(current(t.var))
        # A Python scalar is weakly typed (it takes the variable's dtype), so only arrays
        # are held to the target's spec; ``prepare`` below judges the rest.
        if entry.spec is None and t.spec is not None and _is_array(value):
            problem = mismatch(t.spec, value)
            if problem:
                return problem, None
        if t.convert is not None:
            value = t.convert(value)
        _, value, problem = prepare(t.var, value)
    except Exception as e:  # a reader or a user's conversion failed: report it with the rest
        return f"cannot be converted ({type(e).__name__}: {e})", None
    return problem, value


def shared_names(claims: Iterable[tuple[str, Iterable[str]]]) -> dict[str, list[str]]:
    """``{entry name: [claimant, ...]}`` for every entry name claimed more than once.

    ``claims`` are ``(claimant, entry names)`` pairs, e.g. ``(variable name, keys)``.

    Example::

        shared_names([("a", ["x"]), ("b", ["x", "y"])])   # {'x': ['a', 'b']}
    """
    claims = [(name, tuple(keys)) for name, keys in claims]
    every = [key for _, keys in claims for key in keys]
    if len(set(every)) == len(every):  # the usual case, checked at C speed
        return {}
    first: dict[str, str] = {}
    shared: dict[str, list[str]] = {}
    for name, keys in claims:
        for key in keys:
            owner = first.setdefault(key, name)
            if owner != name:
                names = shared.setdefault(key, [owner])
                if name not in names:
                    names.append(name)
    return shared


# ----- assigning ---------------------------------------------------------------------------
def apply(p: Plan, *, what: str, strict: bool = True, allow_unexpected: bool = False,
          report: Callable[..., LoadReport] = LoadReport,
          error: Callable[..., LoadMismatchError] = LoadMismatchError,
          hint: str = "") -> LoadReport:
    """Assign what ``p`` planned: all of it or nothing when ``strict``, else what fits.

    Args:
      p: the result of ``plan``.
      what: how messages name the operation (``"load_linen_variables"``,
        ``"restore('model.msgpack')"``); also ``commit``'s owner.
      strict: any missing, unexpected or mismatched entry raises and nothing is assigned.
        With ``False`` every entry that fits is assigned (one ``commit`` call).
      allow_unexpected: with ``strict``, entries that no variable takes do not raise
        (they stay in the report).
      report: builds the report from the ``LoadReport`` fields as keywords (a subclass
        adding fields: ``functools.partial(RestoreReport, path=..., step=...)``).
      error: builds the exception from ``(report, what, hint)``.
      hint: added to the error message when entries are both missing and unexpected.

    Returns:
      The report; ``report.loaded`` names the variables assigned.

    Raises:
      LoadMismatchError (or ``error``'s class): strict and something does not fit; its
        ``report`` lists everything, and no variable was changed.
      AssignmentError, UndeclaredVariableError: from ``commit`` (inside a transformation
        that does not declare the variables); no variable was changed.
    """
    fields = dict(missing=tuple(t.name for t in p.missing),
                  unexpected=tuple(e.stored for e in p.unexpected),
                  mismatched=tuple(p.mismatched), sources=dict(p.sources))
    refused = fields["missing"] or fields["mismatched"] or (
        fields["unexpected"] and not allow_unexpected)
    if strict and refused:
        raise error(report(loaded=(), **fields), what, hint)
    if p.loads:
        commit([t.var for t, _ in p.loads], [value for _, value in p.loads], owner=what,
               names=[t.name for t, _ in p.loads])
    return report(loaded=tuple(t.name for t, _ in p.loads), **fields)


def nearest(word: str, pool: Sequence[str]) -> str:
    """``"; nearest: 'a', 'b'"``: the names of ``pool`` closest to ``word`` ('' if none)."""
    close = difflib.get_close_matches(word, pool, n=3, cutoff=0.5)
    return f"; nearest: {', '.join(map(repr, close))}" if close else ""
