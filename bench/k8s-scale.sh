#!/usr/bin/env bash
# Scale of `serin controller` (issue #12): N Rollouts (default 1000) in the
# test API server (scripts/k8s-test-server), the controller as its own
# process; prints its RSS, the time to the first full reconcile, and the
# reaction latency (new image → status for that generation written) at rest
# and during a burst of 100 simultaneous deploys. The bench plays the kubelet.
#
#   bench/k8s-scale.sh [N]            # e.g. bench/k8s-scale.sh 10000
#   PROFILE=release bench/k8s-scale.sh 10000
# Environment: KUBECONFIG_FILE (default: a server started by
# scripts/k8s-test-server in its own state dir, stopped afterwards),
# SAMPLES (50), BURST (100), PROFILE (debug), RESYNC (the controller's --resync-seconds, 300).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
PROFILE=${PROFILE:-debug}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q "${flag[@]}" -p serin-platform-kube --example kube_scale
kc=${KUBECONFIG_FILE:-}
if [ -z "$kc" ]; then
  state=$(mktemp -d /tmp/serin-k8s-scale.XXXXXX)
  kc=$(scripts/k8s-test-server start "$state")
  trap 'scripts/k8s-test-server stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
fi
"target/$PROFILE/examples/kube_scale" --kubeconfig "$kc" --rollouts "$N" \
  --samples "${SAMPLES:-50}" --burst "${BURST:-100}" ${RESYNC:+--resync "$RESYNC"}
