#!/usr/bin/env bash
# The seed's deploy-blue-green.sh, rewritten for Serin: the preview comes up
# and its pre-promotion analysis runs; a person (or this script, after its
# own smoke test) promotes; Serin switches the active service atomically.
#   examples/deploy-blue-green.sh manifests/blue-green-rollout.yaml payment-service http://127.0.0.1:8081
set -euo pipefail
file=${1:?manifest file}; rollout=${2:?rollout name}; preview=${3:?preview URL}
serin apply -f "$file"
# Wait until the preview is up and paused for promotion (exit 3 = still progressing).
until serin get "$rollout" -o json | grep -q '"phase": "Paused"'; do
  serin status "$rollout" >/dev/null && exit 0   # nothing to promote
  sleep 2
done
curl -fsS "$preview/health" >/dev/null || { echo "preview smoke test failed" >&2; serin abort "$rollout"; exit 1; }
serin promote "$rollout"
serin status "$rollout" --watch --timeout 15m
