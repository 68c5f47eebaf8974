#!/bin/sh
# Submit one nightly evaluation to a Ray cluster as a Ray job (run it from cron on any
# machine that reaches the head's dashboard port). The checkout at $REPO must exist on
# the cluster's nodes at the same path, with its .venv: a job's entrypoint runs with the
# cluster's PATH, so the project's own interpreter is named explicitly.
#   RAY_API_SERVER_ADDRESS  e.g. http://head:8265 (token in ~/.ray/auth_token)
set -eu
REPO=${REPO:-/srv/ldm-platform}
export RAY_AUTH_MODE=token
exec "$REPO/.venv/bin/ray" job submit --address "${RAY_API_SERVER_ADDRESS:?set RAY_API_SERVER_ADDRESS}" \
    --submission-id "ldm-nightly-$(date -u +%Y-%m-%d)" -- \
    "$REPO/scripts/nightly.sh" +experiment=downsample_factor "$@"
