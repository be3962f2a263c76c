#!/usr/bin/env bash
# bench/soak.sh: the soak (issue 17; figures in RELIABILITY.md).
#
#   bench/soak.sh                         # 10 minutes against a release build
#   SOAK_SECS=60 BUILD=debug bench/soak.sh   # the CI short form (.ci/run)
#
# Runs the #[ignore]d tests of tests/soak.rs: one wristband process under
# mixed traffic (valid, invalid and garbage credentials at SOAK_RATE, 100
# req/s; WebSockets; 1 MiB uploads and downloads; slow writers, slow readers,
# slowloris; garbage bytes) for SOAK_SECS, RSS and descriptors sampled every
# 10 s. Fails on a request forwarded without its credential's identity, a
# panic in the proxy's log, or more descriptors at the end than at the start.
# Then a 10 s run that leaves 5 connections open must be seen as a leak.
set -euo pipefail

export SOAK_SECS=${SOAK_SECS:-600}
TAG=soak
# shellcheck source=bench/battery-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/battery-env.sh"
[[ $SOAK_SECS =~ ^[0-9]+$ ]] || die "SOAK_SECS must be a number of seconds"
RESULTS=${RESULTS:-$REPO_DIR/bench/results/soak-latest.md}

REPORT=$(mktemp)
trap 'rm -f "$REPORT"' EXIT
export BATTERY_RESULTS=$REPORT
log "SOAK_SECS=$SOAK_SECS, SOAK_RATE=${SOAK_RATE:-100}, binary ${WRISTBAND_BIN:-(test build)}"
status=0
CARGO_TARGET_DIR=$TARGET_DIR cargo test --locked --test soak -- \
    --ignored --test-threads=1 --nocapture "$@" || status=$?

{
    echo "# Soak"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "$(nproc) CPUs; cargo test exit status $status"
    echo
    echo '```'
    cat "$REPORT"
    echo '```'
} | tee "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
log "report written to $RESULTS"
exit $status
