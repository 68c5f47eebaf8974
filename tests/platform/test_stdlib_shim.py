"""``platform`` is the project package and a drop-in superset of the stdlib module."""

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow  # a process importing torch, ray and mlflow
def test_heavy_libraries_import_beside_the_project_package():
    code = (
        "import platform, uuid, torch, ray, mlflow; "
        "print(platform.system(), platform.python_version()); print(platform.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == f"Linux {sys.version.split()[0]}"
    assert second == str(REPO_ROOT / "platform" / "__init__.py")


def test_stdlib_names_are_reexported():
    import platform

    assert hasattr(platform, "__path__"), "the project package, not the stdlib module"
    assert platform.machine() and platform.uname().system == platform.system()
    assert callable(platform.libc_ver) and callable(platform.python_implementation)
