#!/bin/sh
# Start `python -m platform.nightly ARGS...` from cron, systemd, Kubernetes or a Ray job.
# Schedulers run commands with an almost empty environment and another working directory:
# everything is derived from this file's location, so only HOME needs to be set.
#   LDM_VENV  the virtualenv to use (default: <repo>/.venv, as `make setup` creates it)
set -eu
REPO=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
VENV=${LDM_VENV:-$REPO/.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "nightly: no virtualenv at $VENV; run 'make setup' in $REPO or set LDM_VENV" >&2
    exit 2
fi
cd "$REPO"  # relative paths in the config (data/, runs/) resolve against the repo
export PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin"
export MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 HYDRA_FULL_ERROR=0
exec "$VENV/bin/python" -m platform.nightly "$@"
