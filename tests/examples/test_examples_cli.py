"""What every example shares: ``--help`` documents every option, and a missing optional
dependency stops the example with one line naming the ``examples`` extra (before any
training), via ``examples/_support.py``."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

NAMES = ["quickstart", "port", "dp_sgd", "gan_mixed", "maml_sinusoid"]
INSTALL = 'pip install "jax-bridge[examples]"'


@pytest.mark.parametrize("name", NAMES)
def test_help_documents_every_option(load_example, name, capsys):
    example = load_example(name)
    parser = example.build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help and action.help.strip(), (name, action.option_strings)
    assert any("--out" in a.option_strings for a in options), name
    assert any({"--epochs", "--steps"} & set(a.option_strings) for a in options), name
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in options:
        assert action.option_strings[0] in text


def _one_line(exit_info, package: str) -> str:
    message = str(exit_info.value)
    assert "\n" not in message
    assert package in message and INSTALL in message, message
    return message


@pytest.mark.parametrize("name, argv", [
    ("quickstart", ["--epochs", "1"]),
    ("port", ["--epochs", "1", "--object-epochs", "1"]),
    ("dp_sgd", ["--epochs", "1"]),
    ("gan_mixed", ["--steps", "10"]),
    ("maml_sinusoid", ["--steps", "10", "--style", "object", "--order", "first"]),
])
def test_missing_matplotlib_stops_before_training_with_one_line(load_example, monkeypatch,
                                                                tmp_path, name, argv):
    example = load_example(name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(SystemExit) as exit_info:
        example.main(argv + ["--out", str(tmp_path / "x.png")])
    message = _one_line(exit_info, "matplotlib")
    assert message.startswith(f"{name}.py needs matplotlib")
    assert list(tmp_path.iterdir()) == []


def test_missing_scikit_learn_names_the_package_and_trains_nothing(load_example, monkeypatch,
                                                                   tmp_path):
    example = load_example("quickstart")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setattr(example, "build_model", lambda: pytest.fail("training started"))
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--epochs", "1", "--out", str(tmp_path / "x.png")])
    assert _one_line(exit_info, "scikit-learn") == (
        f"quickstart.py needs scikit-learn (the digits data), which is not installed: "
        f"{INSTALL}")


def test_missing_tqdm_is_one_line_too(load_example, monkeypatch):
    example = load_example("dp_sgd")
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--epochs", "1", "--out", ""])
    _one_line(exit_info, "tqdm")


def test_from_the_command_line_the_message_is_one_line_on_stderr():
    """No traceback: the whole of stderr is the message, and the exit status is 1."""
    code = ("import sys, runpy; sys.modules['sklearn'] = None; "
            f"sys.argv = ['quickstart.py', '--out', '']; "
            f"runpy.run_path({str(EXAMPLES / 'quickstart.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"quickstart.py needs scikit-learn (the digits data), which is not installed: "
        f"{INSTALL}"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_maml_plot_without_matplotlib_prints_the_line_and_skips(load_example, monkeypatch,
                                                                tmp_path, capsys):
    """Called from code after training (``run(..., plot_path=...)``), ``plot`` does not
    crash: it prints the message and writes nothing."""
    example = load_example("maml_sinusoid")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "maml.png"
    assert example.plot([], str(path)) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"maml_sinusoid.py needs matplotlib (the plot), which is not installed: "
                   f"{INSTALL}"]
    assert not path.exists()
