"""``examples/gan_mixed.py`` from its command line, run short (the 1,000-step run that
checks the learned statistics is tests/interop/test_mixed_training.py)."""

import pytest

pytest.importorskip("flax")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def test_short_run_moves_the_samples_to_the_data_and_plots_them(load_example, assert_png,
                                                                tmp_path, capsys):
    example = load_example("gan_mixed")
    png = tmp_path / "gan.png"
    result = example.main(["--steps", "400", "--log-every", "200", "--out", str(png),
                           "--quiet"])
    assert abs(result["initial_mean"] - 3.0) > 2
    assert abs(result["mean"] - 3.0) < 0.5, result
    assert result["png"] == str(png)
    assert_png(png)
    out = capsys.readouterr().out
    assert out.count("generated mean") == 4  # before, two reports, after
    assert f"plot written to {png}" in out
