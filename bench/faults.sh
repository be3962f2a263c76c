#!/usr/bin/env bash
# bench/faults.sh: faults under load (issue 17; figures in RELIABILITY.md).
#
#   bench/faults.sh                      # every fault, 60 s each, against a release build
#   FAULT_SECS=20 BUILD=debug bench/faults.sh   # the CI short form (.ci/run)
#   bench/faults.sh sigterm              # only the tests whose name contains "sigterm"
#
# Runs the #[ignore]d tests of tests/faults.rs one at a time: for each fault,
# two wristband processes (a Redis behind Sentinel for the failover, a
# standalone one otherwise; a JWKS endpoint; two backend targets that echo
# the identity they received) take a steady load (FAULT_RATE, 200 req/s) on
# a session route, a JWT route and a public route while the fault strikes a
# quarter of the way in. A test fails on any request forwarded without its
# credential's identity, any answer other than 200/401/503 (502/504 allowed
# for the backend fault; the stopped instance's connection errors counted
# apart), a panic in a proxy's log, or no recovery by the end. Then the
# `the_checks_*` tests run the same rig with broken configs and require the
# counts to go up: a check that cannot fail checks nothing.
#
# The table (one row per fault) goes to stdout and to RESULTS.
set -euo pipefail

export FAULT_SECS=${FAULT_SECS:-60}
TAG=faults
# shellcheck source=bench/battery-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/battery-env.sh"
[[ $FAULT_SECS =~ ^[0-9]+$ ]] || die "FAULT_SECS must be a number of seconds"
RESULTS=${RESULTS:-$REPO_DIR/bench/results/faults-latest.md}

ROWS=$(mktemp)
trap 'rm -f "$ROWS"' EXIT
export BATTERY_RESULTS=$ROWS
unset BATTERY_BACKEND_ADDR
log "FAULT_SECS=$FAULT_SECS, FAULT_RATE=${FAULT_RATE:-200}, binary ${WRISTBAND_BIN:-(test build)}"
status=0
CARGO_TARGET_DIR=$TARGET_DIR cargo test --locked --test faults -- \
    --ignored --test-threads=1 --nocapture --skip backend_process "$@" || status=$?

{
    echo "# Faults under load"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "$(nproc) CPUs, FAULT_SECS=$FAULT_SECS, FAULT_RATE=${FAULT_RATE:-200} req/s," \
        "binary: ${WRISTBAND_BIN:-test build (debug)}; cargo test exit status $status"
    echo
    grep -q . "$ROWS" && {
        echo "| fault | requests | unauthenticated forwards (generator / backend) | answers other than 200/401/503 | 502/504 | connection errors to the stopped instance | 503 window (s after the fault) | back to 100% 200s (s after the fault) | valid credentials answered 401 | answers (status: count) |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        cat "$ROWS"
    }
} | tee "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
log "table written to $RESULTS"
exit $status
