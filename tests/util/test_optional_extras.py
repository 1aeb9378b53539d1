"""Optional extras: ``import bridge`` needs none of them, and a missing one names its extra."""

import subprocess
import sys
import textwrap

import pytest

from bridge._optional import import_optional


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_import_bridge_imports_neither_flax_nor_haiku():
    done = run("""
        import sys, bridge
        assert "flax" not in sys.modules and "haiku" not in sys.modules
        assert "flax" in dir(bridge) and "haiku" in dir(bridge)
        print(bridge.flax.FlaxModule.__name__, bridge.haiku.HaikuModule.__name__)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["FlaxModule", "HaikuModule"]


@pytest.mark.parametrize("library,extra", [("flax", "flax"), ("haiku", "haiku")])
def test_a_missing_library_names_the_extra_to_install(library, extra):
    done = run(f"""
        import sys
        sys.modules[{library!r}] = None          # as if it were not installed
        import bridge
        try:
            bridge.{library}
        except ModuleNotFoundError as e:
            print(e)
    """)
    assert done.returncode == 0, done.stderr
    assert f'pip install "jax-bridge[{extra}]"' in done.stdout


def test_an_unknown_attribute_is_still_an_attribute_error():
    import bridge
    with pytest.raises(AttributeError, match="no attribute 'flaxx'"):
        bridge.flaxx  # noqa: B018


def test_an_error_inside_an_installed_package_is_not_masked(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        import_optional("broken_pkg", "all", "a test")
    assert info.value.name == "not_a_module_anywhere"
    assert "jax-bridge" not in str(info.value)
