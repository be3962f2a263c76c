# bench/battery-env.sh: what bench/faults.sh and bench/soak.sh share, sourced
# by both after they set TAG (the log prefix): the repo and target dirs,
# log/die, the Redis tools check, BUILD (release: build the binary under
# load and export WRISTBAND_BIN; debug: the test build's own binary), and
# the descriptor limit.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO_DIR/$TARGET_DIR ;; esac

log() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$TAG" "$*" >&2; exit 1; }

for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian: redis-server, redis-tools)"
done

cd "$REPO_DIR"
case $BUILD in
    release)
        log "building the binary under load (cargo build --release --bin wristband)"
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --bin wristband >&2 || die "cargo build failed"
        export WRISTBAND_BIN=$TARGET_DIR/release/wristband ;;
    debug) unset WRISTBAND_BIN ;;   # the test build's own binary
    *) die "BUILD must be release or debug" ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
