"""The LDM experiment platform.

Why this file copies the standard library: ``platform`` is also a stdlib module, and
``python -m platform.sweep`` run from the repo root puts this package first on
``sys.path`` for the whole process, so torch, ray, mlflow and uuid import *this*
package when they ask for the stdlib one. Loading the stdlib ``platform.py`` by path
and re-exporting its names makes this package a drop-in superset of it.
Keep everything else out of this file.
"""

import importlib.util as _importlib_util
import os as _os
import sysconfig as _sysconfig


def _load_stdlib_platform():  # noqa: ANN202 - returns a module
    path = _os.path.join(_sysconfig.get_paths()["stdlib"], "platform.py")
    spec = _importlib_util.spec_from_file_location("_stdlib_platform", path)
    module = _importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_stdlib_platform = _load_stdlib_platform()
globals().update(
    {name: value for name, value in vars(_stdlib_platform).items() if not name.startswith("__")}
)
