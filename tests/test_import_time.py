"""`import airnet_restore` and `airnet --help` must not load torch (benchmarks/import_time.py times them)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "numba", "cv2", "numpy")


def run_python(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter, which must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_building_the_parser_does_not_import_torch():
    out = run_python("import sys, airnet_restore.cli as c; c.build_parser(); print('torch' in sys.modules)")
    assert out.strip() == "False"


def test_module_help_exits_0_without_heavy_imports():
    out = run_python(
        "import runpy, sys\n"
        "sys.argv = ['airnet', '--help']\n"
        "try:\n"
        "    runpy.run_module('airnet_restore', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert out.splitlines()[-2:] == ["exit 0", "[]"]


@pytest.mark.parametrize("name", ["AirNet", "AirNetConfig", "AirNetError", "list_variants", "load_model", "restore", "restore_files"])
def test_public_names_resolve_on_first_use(name):
    import airnet_restore

    assert name in airnet_restore.__all__ and getattr(airnet_restore, name).__name__ == name


def test_no_subpackage_shadows_a_public_name():
    # A fresh interpreter: the subpackages load first, then the package's `restore` is looked up.
    out = run_python("import airnet_restore.inference.pipeline as p, airnet_restore.image_io\nimport airnet_restore\n"
                     "print(airnet_restore.restore is p.restore)")
    assert out.strip() == "True"


def test_version_comes_from_the_package_metadata():
    from importlib import metadata

    import airnet_restore

    assert airnet_restore.__version__ == metadata.version("airnet-restore")
