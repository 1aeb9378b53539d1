"""A save killed (SIGKILL) at any point leaves a complete checkpoint, and the temporary file
it leaves behind is ignored by ``Checkpoint`` and removed by the next save."""

import os
import select
import shutil
import signal
import subprocess
import sys
import threading

import jax.numpy as jnp
import numpy as np
import pytest

import bridge
import bridge.checkpoint as ckpt
from bridge.checkpoint import _atomic, _format

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

BIG = 1 << 20  # float32 entries of the second checkpoint: 4 MiB


def first():
    return bridge.VarCollection({"w": bridge.StateVar(jnp.full(4, 1.0))})


def second():
    return bridge.VarCollection({"w": bridge.StateVar(jnp.arange(4.0)),
                                 "big": bridge.StateVar(jnp.full(BIG, 2.0))})


def blank(vc):
    """A collection like ``vc``, holding zeros."""
    return bridge.VarCollection({k: bridge.StateVar(jnp.zeros_like(v.value))
                                 for k, v in vc.items()})


# The child saves checkpoint 1, starts saving the larger checkpoint 2 to the same path and,
# at the point named on its command line, says "ready" and waits to be killed (or for a line
# on its stdin, to carry on).
CHILD = r"""
import io, os, sys
import jax.numpy as jnp
import bridge, bridge.checkpoint as ckpt
from bridge.checkpoint import _atomic, _format

path, fmt, point, manager, big = sys.argv[1:4] + [sys.argv[4] == "manager", int(sys.argv[5])]

def pause(*args):
    print("ready", flush=True)
    sys.stdin.readline()

real_writer = getattr(_format, "write_" + fmt)

def writer(f, step, records):
    if point == "before-writing":
        pause()
    if point == "mid-write":
        buffer = io.BytesIO()
        real_writer(buffer, step, records)
        half = len(buffer.getvalue()) // 2
        f.write(buffer.getvalue()[:half])
        f.flush()
        pause()
        f.write(buffer.getvalue()[half:])
        return
    real_writer(f, step, records)
    if point == "before-fsync":
        f.flush()
        pause()

first = bridge.VarCollection({"w": bridge.StateVar(jnp.full(4, 1.0))})
second = bridge.VarCollection({"w": bridge.StateVar(jnp.arange(4.0)),
                               "big": bridge.StateVar(jnp.full(big, 2.0))})
if manager:
    checkpoints = ckpt.Checkpoint(path, format=fmt)
    checkpoints.save(first, 1)
else:
    ckpt.save(path, first, step=1, format=fmt)
setattr(_format, "write_" + fmt, writer)
if point == "before-rename":
    os.replace = pause
if point == "before-directory-fsync":
    _atomic._fsync_directory = pause
if manager:
    checkpoints.save(second, 2)
else:
    ckpt.save(path, second, step=2, format=fmt)
print("finished", flush=True)
"""


def start_child(path, fmt, point, manager=False):
    """Run the child; it stops at ``point`` (see ``wait_until_ready``)."""
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), fmt, point,
                             "manager" if manager else "save", str(BIG)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_ready(proc, timeout=60):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line != "ready\n":
        proc.kill()
        pytest.fail(f"the child did not reach its pause: {line!r}\n{proc.communicate()[1]}")




KILL_POINTS = {  # point -> the step the path holds afterwards
    "before-writing": 1,
    "mid-write": 1,
    "before-fsync": 1,
    "before-rename": 1,
    "before-directory-fsync": 2,
}
CASES = [(point, "npz") for point in KILL_POINTS] + [("mid-write", "msgpack")]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """For each case, a directory in which a save to ``model.<fmt>`` was killed; and for
    ``"manager"``, a logdir in which ``Checkpoint.save`` was killed mid-write.

    The children run at the same time: each spends most of its time importing JAX.
    """
    runs = {}
    for point, fmt in CASES:
        directory = tmp_path_factory.mktemp(f"{point}-{fmt}")
        runs[point, fmt] = directory, start_child(directory / f"model.{fmt}", fmt, point)
    logdir = tmp_path_factory.mktemp("manager")  # Checkpoint(logdir) saving 1, then 2
    runs["manager"] = logdir, start_child(logdir, "npz", "mid-write", manager=True)
    try:
        for _, proc in runs.values():
            wait_until_ready(proc)
    finally:
        for _, proc in runs.values():
            proc.kill()
            proc.communicate(timeout=60)
    assert all(proc.returncode == -signal.SIGKILL for _, proc in runs.values())
    return {case: directory for case, (directory, _) in runs.items()}


def copy_of(directory, tmp_path):
    """The killed run's directory, copied so each test has its own."""
    return shutil.copytree(directory, tmp_path / "copy")


def temp_files(directory):
    return sorted(name for name in os.listdir(directory) if _atomic.is_temp_name(name))


@pytest.mark.parametrize("point, fmt", CASES)
def test_killed_save_leaves_a_complete_checkpoint(killed, tmp_path, point, fmt):
    directory = copy_of(killed[point, fmt], tmp_path)
    step = KILL_POINTS[point]
    saved = first() if step == 1 else second()
    vc = blank(saved)
    report = ckpt.restore(str(directory / f"model.{fmt}"), vc)  # strict: every entry fits
    assert report.step == step
    for name, var in saved.items():
        np.testing.assert_array_equal(vc[name].value, var.value)


@pytest.mark.parametrize("point, fmt", CASES)
def test_next_save_after_a_killed_save_succeeds_and_leaves_no_temp_file(killed, tmp_path,
                                                                         point, fmt):
    directory = copy_of(killed[point, fmt], tmp_path)
    if KILL_POINTS[point] == 1:  # killed before its rename: its temporary file is left
        assert len(temp_files(directory)) == 1
    path = directory / f"model.{fmt}"
    ckpt.save(str(path), second(), step=3, format=fmt)
    assert temp_files(directory) == []
    assert ckpt.restore(str(path), second()).step == 3


def test_save_to_another_file_removes_temp_files_of_killed_saves(killed, tmp_path):
    directory = copy_of(killed["mid-write", "npz"], tmp_path)
    assert len(temp_files(directory)) == 1
    ckpt.save(str(directory / "other.msgpack"), first())
    assert temp_files(directory) == []
    assert sorted(os.listdir(directory)) == ["model.npz", "other.msgpack"]


def test_checkpoint_manager_ignores_and_then_removes_a_killed_saves_temp_file(killed,
                                                                              tmp_path):
    manager = ckpt.Checkpoint(copy_of(killed["manager"], tmp_path))
    assert len(temp_files(manager.directory)) == 1
    assert manager.steps() == [1]
    vc = blank(first())
    assert manager.restore(vc) == (1, manager.path(1))
    np.testing.assert_array_equal(vc["w"].value, first()["w"].value)
    manager.save(second(), 3)
    assert manager.steps() == [1, 3]
    assert temp_files(manager.directory) == []


def test_temp_file_of_another_processs_save_in_progress_is_not_removed(tmp_path):
    path = tmp_path / "model.npz"
    proc = start_child(path, "npz", "mid-write")
    try:
        wait_until_ready(proc)
        live = temp_files(tmp_path)
        assert len(live) == 1
        ckpt.save(str(tmp_path / "other.msgpack"), first())
        assert temp_files(tmp_path) == live
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out == "finished\n"
    assert ckpt.restore(str(path), second()).step == 2
    assert temp_files(tmp_path) == []


def test_temp_file_of_another_threads_save_in_progress_is_not_removed(tmp_path, monkeypatch):
    # Another thread's save is paused mid-write while this thread saves beside it.
    path = str(tmp_path / "slow.npz")
    writing, resume = threading.Event(), threading.Event()
    real = _format.write_npz

    def slow_writer(f, step, records):
        real(f, step, records)
        writing.set()
        assert resume.wait(30)

    monkeypatch.setattr(_format, "write_npz", slow_writer)
    errors = []

    def slow_save():
        try:
            ckpt.save(path, second(), step=2)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=slow_save)
    thread.start()
    try:
        assert writing.wait(30)
        live = temp_files(tmp_path)
        ckpt.save(str(tmp_path / "fast.msgpack"), first())
        assert temp_files(tmp_path) == live
    finally:
        resume.set()
        thread.join(30)
    assert errors == []
    assert ckpt.restore(path, second()).step == 2
    assert temp_files(tmp_path) == []
