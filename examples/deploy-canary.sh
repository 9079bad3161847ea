#!/usr/bin/env bash
# The seed's deploy-canary.sh, rewritten for Serin: apply the new image and
# let the rollout's own steps and analysis decide. Exit code: 0 Healthy,
# 1 aborted/degraded, 2 timed out.
#   examples/deploy-canary.sh manifests/canary-rollout.yaml frontend-app
set -euo pipefail
file=${1:?manifest file}; rollout=${2:?rollout name}
serin apply -f "$file"
serin status "$rollout" --watch --no-prompt --timeout 45m || {
  code=$?
  echo "canary of $rollout did not complete (exit $code); rolling back" >&2
  serin abort "$rollout" || true
  exit "$code"
}
