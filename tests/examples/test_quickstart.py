"""``examples/quickstart.py``, run short: a CNN on scikit-learn's digits."""

import math

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def test_three_epochs_learn_the_digits_and_write_the_learning_curve(load_example, assert_png,
                                                                     tmp_path, capsys):
    example = load_example("quickstart")
    png = tmp_path / "out" / "quickstart.png"  # the folder is created
    result = example.main(["--epochs", "3", "--out", str(png), "--quiet"])
    assert result["test_accuracy"] > 0.8, result  # chance: 0.1
    assert len(result["train_loss"]) == len(result["test_accuracy_curve"]) == 3
    assert all(math.isfinite(v) for v in result["train_loss"])
    assert result["train_loss"][-1] < result["train_loss"][0]
    assert result["test_accuracy_curve"][-1] == result["test_accuracy"]
    assert result["png"] == str(png)
    assert_png(png)
    out = capsys.readouterr().out
    assert f"test accuracy after 3 epochs: {result['test_accuracy']:.3f}" in out


def test_no_plot_with_an_empty_out(load_example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = load_example("quickstart").main(["--epochs", "1", "--out", "", "--quiet"])
    assert result["png"] is None
    assert list(tmp_path.iterdir()) == []
