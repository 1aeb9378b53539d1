"""``examples/port.py``, run short: Haiku and Linen weights into object code and back."""

import pytest

pytest.importorskip("haiku")
pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def test_weights_cross_both_ways_and_the_native_models_agree(load_example, assert_png,
                                                             tmp_path, capsys):
    example = load_example("port")
    png = tmp_path / "port.png"
    result = example.main(["--epochs", "2", "--object-epochs", "1", "--hidden", "32",
                           "--out", str(png), "--quiet"])
    for framework in ("haiku", "linen"):
        r = result[framework]
        assert r["native_accuracy"] > 0.5 and r["object_accuracy"] > 0.5, r  # chance: 0.1
        assert len(r["native_curve"]) == 2 and len(r["object_curve"]) == 1
        # the example asserts these itself; here: they were measured, and are tiny
        assert r["import_diff"] <= example.TOLERANCE
        assert r["export_diff"] <= example.TOLERANCE
        assert r["logits_moved"] > 1e-3  # object training did change the weights
    assert result["haiku"]["exported_names"] == ["mlp/~/linear_0", "mlp/~/linear_1"]
    assert result["linen"]["exported_names"] == ["Dense_0", "Dense_1"]
    assert_png(png)
    out = capsys.readouterr().out
    assert "haiku" in out and "linen" in out and "asserted <= 1e-05" in out
