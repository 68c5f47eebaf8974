"""Make ``import platform`` resolve to the project package under plain ``pytest`` too.

``pytest`` imports the stdlib ``platform`` module before the repo root joins
``sys.path``; dropping the cached module lets the next import find ours
(see ``platform/__init__.py``).
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent)
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
if not hasattr(sys.modules.get("platform"), "__path__"):
    sys.modules.pop("platform", None)
    import platform  # noqa: F401,E402  (re-import: now the project package)
