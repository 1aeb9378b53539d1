"""`python -m bench` runs end to end: the runner, a benchmark or two, results.md, a PNG.

It asserts nothing about times (they depend on the machine); only that the command exits
0 and writes its files. `--only` keeps it short: the full `--quick` run takes about two
minutes on 2 CPU cores; these two benchmarks (an existing script and a new one with a
plot) took 23 s on 2 shared CPU cores, so the test is not marked slow.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_python_m_bench_quick_writes_results_and_png(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "train_step", "depth",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results.md"
    assert results.is_file()
    assert "python -m bench --quick" in results.read_text()
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs, "no PNG written"
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
