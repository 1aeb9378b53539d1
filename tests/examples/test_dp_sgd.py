"""``examples/dp_sgd.py``, run short: DP-SGD against non-private training on digits."""

import math

import pytest

pytest.importorskip("dp_accounting")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from bridge.privacy import dpsgd


def test_two_epochs_of_both_runs_and_the_epsilon_spent(load_example, assert_png, tmp_path,
                                                       capsys):
    example = load_example("dp_sgd")
    png = tmp_path / "dp.png"
    result = example.main(["--epochs", "2", "--out", str(png), "--quiet"])
    assert result["plain_accuracy"] > 0.7, result   # chance: 0.1
    assert result["private_accuracy"] > 0.3, result
    assert len(result["private_curve"]) == len(result["plain_curve"]) == 2
    # 1,437 training images, batches of 32: 44 steps per epoch
    assert result["steps"] == 2 * (1437 // 32)
    assert (result["noise_multiplier"], result["l2_norm_clip"], result["delta"]) == (
        1.1, 1.0, 1e-5)
    expected = dpsgd.analyze_dp_sample_without_replacement(32 / 1437, 1.1, result["steps"],
                                                           delta=1e-5)
    assert result["epsilon"] == pytest.approx(expected)
    assert 0 < result["epsilon_poisson"] < result["epsilon"] < math.inf
    assert_png(png)
    out = capsys.readouterr().out
    assert f"({result['epsilon']:.2f}, 1e-05)-DP" in out
    assert "noise_multiplier 1.1" in out and "l2_norm_clip 1.0" in out

