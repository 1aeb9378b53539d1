"""Timing code shared by the benchmarks in ``bench/``.

Every benchmark measures its variants *interleaved* in one process: each round runs every
variant in turn (the order rotates from round to round), so a drift in machine speed hits
all variants alike; it reports, per variant, the median over rounds of the mean time per
call, the 25th-75th percentiles over rounds (the noise), and the ratio of its median to
an anchor's median from the same run.

The pieces:

* ``run_block(fn, n)``: seconds per call over ``n`` calls of ``fn``, each blocked on its
  result (``jax.block_until_ready``);
* ``calls_for(fn, seconds)``: how many calls take about ``seconds`` (for slow variants);
* ``interleave(variants, rounds, calls)``: the interleaved rounds; per-round times;
* ``Table``: rows of per-round times, each with an anchor row; text and Markdown output;
* ``Section``: what a benchmark returns to the runner (``python -m bench``): its tables,
  the targets it is read against, notes and plot files;
* ``cpu_info()``, ``versions()``: the machine and the library versions, for headers.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import statistics
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

Call = Callable[[], object]

UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


# ----- timing -------------------------------------------------------------------------------
def block(value: object) -> object:
    """Wait for every array in ``value`` (any pytree; non-arrays pass)."""
    import jax

    return jax.block_until_ready(value)


def run_block(fn: Call, n: int) -> float:
    """Seconds per call over ``n`` calls of ``fn``, each blocked on its result."""
    t0 = time.perf_counter()
    for _ in range(n):
        block(fn())
    return (time.perf_counter() - t0) / max(n, 1)


def calls_for(fn: Call, seconds: float, minimum: int = 1, maximum: int = 10_000) -> int:
    """The number of calls of ``fn`` (already warm) that take about ``seconds``."""
    t = run_block(fn, 2)
    return int(min(maximum, max(minimum, seconds / max(t, 1e-9))))


def interleave(variants: Mapping[str, Call], rounds: int,
               calls: Union[int, Mapping[str, int]], warmup: int = 0,
               collect: bool = True) -> dict[str, list[float]]:
    """Per-round seconds per call of every variant, measured in interleaved rounds.

    Args:
      variants: name -> a function running one call (one training step, ...).
      rounds: number of rounds; in round ``r`` the variants run in the order of
        ``variants`` rotated by ``r``.
      calls: calls per variant per round (one number, or one per variant).
      warmup: untimed calls of each variant before the first round (the first compiles).
      collect: ``gc.collect()`` before each round, so a collection does not land inside
        one variant's block more often than another's.
    """
    names = list(variants)
    per = calls if isinstance(calls, Mapping) else {n: calls for n in names}
    for name in names:
        if warmup:
            run_block(variants[name], warmup)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        if collect:
            gc.collect()
        for name in names[k:] + names[:k]:
            times[name].append(run_block(variants[name], per[name]))
    return times


def first_call(make: Callable[[], Call]) -> float:
    """Seconds of the first call (trace + compile + run) of a freshly built function."""
    fn = make()
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> tuple[float, float]:
    """25th and 75th percentiles."""
    q = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q[0]), float(q[1])


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line through ``(x, y)``."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


# ----- tables -------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    """One variant: its per-round times (seconds per call) and the row it is compared to."""

    name: str
    times: list[float]
    anchor: Optional[str] = None   # the name of the anchor row (None: itself)
    note: str = ""
    skipped: Optional[str] = None  # why there are no times

    @property
    def median(self) -> float:
        return median(self.times)


@dataclasses.dataclass
class Table:
    """Rows measured in the same interleaved run; ratios are medians over anchor medians."""

    title: str
    unit: str = "us"
    rows: list[Row] = dataclasses.field(default_factory=list)
    what: str = "per call"      # what one time is: "per step", "first call", ...
    caption: str = ""

    def add(self, name: str, times: Sequence[float], anchor: Optional[str] = None,
            note: str = "") -> Row:
        row = Row(name, list(times), anchor, note)
        self.rows.append(row)
        return row

    def skip(self, name: str, why: str) -> None:
        self.rows.append(Row(name, [], skipped=why))

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def ratio(self, name: str, anchor: Optional[str] = None) -> float:
        row = self.row(name)
        base = self.row(anchor or row.anchor or name)
        return row.median / base.median

    def _cells(self, row: Row) -> tuple[str, str, str, str]:
        if row.skipped:
            return "skipped", "", "", row.skipped
        scale = UNITS[self.unit]
        lo, hi = spread(row.times)
        digits = 1 if self.unit in ("us", "ns") else 2 if self.unit == "ms" else 3
        ratio = self.ratio(row.name)
        anchor = row.anchor or row.name
        return (f"{row.median / scale:.{digits}f}", f"{lo / scale:.{digits}f}-"
                f"{hi / scale:.{digits}f}", f"{ratio:.2f}x", "anchor" if anchor == row.name
                else f"vs {anchor}")

    def text(self) -> str:
        """The table as fixed-width text, for the console."""
        width = max([len(r.name) for r in self.rows] + [10]) + 2
        head = (f"{'variant':{width}s} {'median ' + self.unit:>12s} "
                f"{'p25-p75 ' + self.unit:>19s} {'ratio':>7s}  anchor")
        lines = [self.title, head, "-" * len(head)]
        for r in self.rows:
            med, q, ratio, anchor = self._cells(r)
            if r.skipped:
                lines.append(f"{r.name:{width}s} skipped: {r.skipped}")
                continue
            lines.append(f"{r.name:{width}s} {med:>12s} {q:>19s} {ratio:>7s}  {anchor}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The table as Markdown (no title line)."""
        lines = [f"| variant | median {self.unit} {self.what} | p25-p75 {self.unit} | ratio | "
                 f"anchor |", "| --- | ---: | ---: | ---: | --- |"]
        for r in self.rows:
            med, q, ratio, anchor = self._cells(r)
            if r.skipped:
                lines.append(f"| `{r.name}` | skipped: {r.skipped} | | | |")
            else:
                lines.append(f"| `{r.name}` | {med} | {q} | {ratio} | {anchor} |")
        return "\n".join(lines)


@dataclasses.dataclass
class Target:
    """A ratio the benchmark is read against: ``value <= limit`` is met."""

    label: str
    value: float
    limit: float

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def line(self) -> str:
        return (f"{self.label} = {self.value:.2f}x (target <= {self.limit:.2f}x: "
                f"{'met' if self.met else 'NOT met'})")


@dataclasses.dataclass
class Section:
    """What one benchmark gives the runner."""

    name: str                   # the script, e.g. "train_step"
    title: str
    command: str                # the stand-alone command with the settings used
    settings: str = ""          # rounds, steps, ... as run
    tables: list[Table] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    plots: list[str] = dataclasses.field(default_factory=list)   # file paths
    seconds: float = 0.0        # wall time of the benchmark

    def text(self) -> str:
        parts = [f"== {self.title} ({self.name}) ==", f"command: {self.command}"]
        if self.settings:
            parts.append(self.settings)
        parts += ["", *[t.text() + "\n" for t in self.tables]]
        parts += [t.line() for t in self.targets]
        parts += self.notes
        parts += [f"plot: {p}" for p in self.plots]
        return "\n".join(parts)


def print_section(section: Section) -> None:
    print(section.text(), flush=True)


# ----- the machine --------------------------------------------------------------------------
def cpu_model() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def cpu_info() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} logical CPUs"
    if usable is not None and usable != os.cpu_count():
        cores += f" ({usable} usable)"
    return f"{cpu_model()}, {cores}"


def _version(module: str) -> Optional[str]:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", "?")


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and of the libraries the benchmarks use (missing ones say '-')."""
    out = {"python": platform.python_version()}
    for name, module in [("jax", "jax"), ("jaxlib", "jaxlib"), ("optax", "optax"),
                         ("bridge", "bridge"), ("flax", "flax"), ("equinox", "equinox"),
                         ("dm-haiku", "haiku"), *[(m, m) for m in extra]]:
        out[name] = _version(module) or "-"
    return out


def versions_line(extra: Iterable[str] = ()) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions(extra).items())


def header() -> str:
    import jax

    return (f"{versions_line()}\nCPU: {cpu_info()}; jax backend {jax.default_backend()}, "
            f"{jax.device_count()} device(s)")


def section_to_dict(section: Section) -> dict:
    """A JSON-able copy (for a benchmark that runs in a subprocess)."""
    return dataclasses.asdict(section)


def section_from_dict(data: dict) -> Section:
    data = dict(data)
    data["tables"] = [Table(**{**t, "rows": [Row(**r) for r in t["rows"]]})
                      for t in data["tables"]]
    data["targets"] = [Target(**t) for t in data["targets"]]
    return Section(**data)
