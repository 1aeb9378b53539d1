"""Run every benchmark and write ``results.md`` and the plots.

Usage (from the repository root)::

    python -m bench                     # every benchmark, full size (several minutes)
    python -m bench --quick             # CI-sized: few rounds, steps and depths
    python -m bench --only depth maml   # a subset
    python -m bench --quick --out /tmp/bench-results

Each benchmark measures its variants interleaved in one process, next to its anchor
(plain JAX, or the native library), and reports medians over rounds and ratios to the
anchor; see ``bench/README.md``. The results go to ``--out`` (default: ``bench/``):
``results.md`` (date, machine, versions, one table per benchmark with its command) and
PNG plots (``depth.png``, ``compile_time.png``, ``ratios.png``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time
import traceback
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import _harness as H  # noqa: E402

# In the order they run; sharded_step runs in a subprocess of its own (8 forced devices).
BENCHMARKS = ["train_step", "depth", "compile_time", "maml", "per_example", "dp_sgd",
              "interop", "sharded_step"]


def ratios_plot(sections: list[H.Section], path: str) -> Optional[str]:
    targets = [(f"{s.name}: {t.label}", t.value, t.limit) for s in sections for t in s.targets]
    if not targets:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.32 * len(targets) + 1.2))
    ys = range(len(targets))[::-1]
    colors = ["tab:green" if v <= limit else "tab:red" for _, v, limit in targets]
    ax.barh(list(ys), [v for _, v, _ in targets], color=colors, alpha=0.75)
    ax.scatter([limit for _, _, limit in targets], list(ys), marker="|", s=200, color="black",
               label="target", zorder=3)
    ax.axvline(1.0, color="gray", lw=0.8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([label for label, _, _ in targets], fontsize=7)
    ax.set_xlabel("ratio to the anchor measured in the same run (median of rounds)")
    ax.set_title("Benchmark ratios against their targets (green: met)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(sections: list[H.Section], failures: dict[str, str], command: str,
             started: datetime.datetime, seconds: float, load: tuple, out_dir: str) -> str:
    import jax

    lines = [
        "# Benchmark results", "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, in {seconds:.0f} s.", "",
        f"- machine: {H.cpu_info()}; jax backend `{jax.default_backend()}`",
        f"- load average (1 min) at the start and the end: {load[0]:.2f}, {load[1]:.2f}",
        f"- versions: {H.versions_line()}", "",
        "Every table was measured interleaved in one process: rounds run every variant in "
        "turn (the order rotates), a row is the median over rounds of the mean time per "
        "call, `p25-p75` the spread over rounds, and `ratio` its median over its anchor's "
        "median from the same run. Quote the ratios, not the times.", "",
        "## Targets", "",
        "| benchmark | comparison | measured | target | met |", "| --- | --- | ---: | ---: | --- |",
    ]
    for s in sections:
        for t in s.targets:
            lines.append(f"| {s.name} | {t.label} | {t.value:.2f}x | <= {t.limit:.2f}x | "
                         f"{'yes' if t.met else '**no**'} |")
    for name, error in failures.items():
        lines.append(f"| {name} | failed: {error} | | | |")
    if os.path.exists(os.path.join(out_dir, "ratios.png")):
        lines += ["", "![ratios against targets](ratios.png)"]
    for s in sections:
        lines += ["", f"## {s.name}: {s.title}", "", f"Command: `{s.command}` "
                  f"({s.seconds:.0f} s). {s.settings}."]
        for t in s.tables:
            lines += ["", f"**{t.title}**", "", t.markdown()]
        if s.targets:
            lines += [""] + [f"- {t.line()}" for t in s.targets]
        if s.notes:
            lines += [""] + [f"- {n}" if "\n" not in n else n for n in s.notes]
        for p in s.plots:
            name = os.path.basename(p)
            lines += ["", f"![{s.name}]({name})"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized runs: few rounds, steps and depths")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                        help="directory for results.md and the PNGs (default: bench/)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these benchmarks (of: {', '.join(BENCHMARKS)})")
    args = parser.parse_args(argv)
    command = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    os.makedirs(args.out, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t0 = time.perf_counter()
    print(H.header(), flush=True)   # also starts JAX before any benchmark module is imported

    sections: list[H.Section] = []
    failures: dict[str, str] = {}
    for name in args.only or BENCHMARKS:
        print(f"\n--- {name} ---", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            section = module.bench(quick=args.quick, out_dir=args.out)
        except Exception as e:  # noqa: BLE001 - report it and run the others
            traceback.print_exc()
            failures[name] = f"{type(e).__name__}: {str(e)[:200]}"
            continue
        H.print_section(section)
        sections.append(section)
    ratios_plot(sections, os.path.join(args.out, "ratios.png"))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = markdown(sections, failures, command, started, time.perf_counter() - t0,
                    (load0, load1), args.out)
    path = os.path.join(args.out, "results.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"\nwrote {path} ({time.perf_counter() - t0:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
