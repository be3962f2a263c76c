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

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SOAK_SECS=${SOAK_SECS:-600}
BUILD=${BUILD:-release}
RESULTS=${RESULTS:-$REPO_DIR/bench/results/soak-latest.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO_DIR/$TARGET_DIR ;; esac

log() { printf '[soak] %s\n' "$*" >&2; }
die() { printf '[soak] error: %s\n' "$*" >&2; exit 1; }

for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian: redis-server, redis-tools)"
done
[[ $SOAK_SECS =~ ^[0-9]+$ ]] || die "SOAK_SECS must be a number of seconds"

cd "$REPO_DIR"
case $BUILD in
    release)
        log "building the binary under load (cargo build --release --bin wristband)"
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --bin wristband >&2 || die "cargo build failed"
        export WRISTBAND_BIN=$TARGET_DIR/release/wristband ;;
    debug) unset WRISTBAND_BIN ;;
    *) die "BUILD must be release or debug" ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

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
