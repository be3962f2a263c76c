#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: the
# user-space work of one request, independent of what else the machine is
# doing (repeated runs of the same binary agree within ~1-1.5%).
# A complement to bench/run.sh, not a replacement: it counts no kernel time,
# no cache misses, and valgrind's CPU lacks SHA-NI and AVX-512, so crypto
# counts run higher than on real hardware.
#
#   bench/instructions.sh                 # every target
#   TARGETS="hyper-floor wristband" bench/instructions.sh
#   WRISTBAND_BIN=/path/to/older/wristband bench/instructions.sh
#   KEEP_DIR=/tmp/cg bench/instructions.sh  # keep the profiles, for callgrind_annotate
#
# Each target runs once under callgrind: 1,000 requests to warm it up, whose
# counts (and start-up's: aws-lc's jitter entropy alone varies by ~1.7M
# instructions from run to run) are zeroed; BACKGROUND_S (5) seconds without
# a request, for what the target does by the clock (timers, wristband's
# Redis pings) at valgrind's pace, which varies with the machine's load; then
# N1 and N2 requests, each over four new keep-alive connections, dumped
# apart. Each phase's background (its length times that rate) is taken out,
# then (count2 - count1) / (N2 - N1) leaves the connections out too.
# Targets: hyper-floor (examples/bare_proxy.rs), wristband (public route),
# wristband-rs256 (verified-token cache on), wristband-rs256-nocache,
# wristband-session (session cache on: after the first request, no Redis),
# wristband-session-nocache (one HGETALL per request; Redis not counted),
# hyper-floor-session (hyper-floor plus one fred HGETALL per request; not in
# the default list); hyper-floor-session-spec (hyper-floor-spec plus what
# SPEC asks of a session route: cookie, id check, HGETALL, X-Auth-User;
# bare_proxy.rs `spec` with Redis; not in the default list); hyper-floor-spec (hyper-floor doing what SPEC asks of a
# public route, written directly: bare_proxy.rs `spec`); and, asked by an nginx `auth_request`
# (bench/nginx-auth-request.conf.in, the client talking to nginx, nginx not
# counted), wristband-forward-auth (SPEC §8, the RS256 token, verified-token
# cache on) and hyper-floor-auth (examples/bare_auth.rs: an empty 200 with
# X-Auth-User), neither in the default list.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
TARGETS=${TARGETS:-hyper-floor hyper-floor-spec wristband wristband-rs256 wristband-rs256-nocache wristband-session wristband-session-nocache}
N1=${N1:-1000}
N2=${N2:-3000}
BACKGROUND_S=${BACKGROUND_S:-5}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO_DIR/$TARGET_DIR ;; esac
PATH=$PATH:/usr/sbin:/sbin

log() { printf '[instructions] %s\n' "$*" >&2; }
die() { printf '[instructions] error: %s\n' "$*" >&2; exit 1; }

for tool in valgrind callgrind_control nginx redis-server python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian: valgrind, nginx-light, redis-server)"
done
[[ $N1 =~ ^[1-9][0-9]*$ && $N2 =~ ^[1-9][0-9]*$ && $N2 -gt $N1 ]] || die "N1 and N2 must be positive integers, N2 > N1"

log "building (cargo build --release --bin wristband --example bare_proxy --example bare_auth --example bench_tokens)"
(cd "$REPO_DIR" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --bin wristband \
    --example bare_proxy --example bare_auth --example bench_tokens) >&2 || die "cargo build failed"
# WRISTBAND_BIN measures another build (an older commit's, say) instead.
WB_BIN=${WRISTBAND_BIN:-$TARGET_DIR/release/wristband}
FLOOR_BIN=$TARGET_DIR/release/examples/bare_proxy
FLOOR_AUTH_BIN=$TARGET_DIR/release/examples/bare_auth

TMP=$(mktemp -d)
PIDS=()     # nginx and Redis, for the whole run
MEASURED=  # the process under callgrind, while it runs
cleanup() {
    [ -z "$MEASURED" ] || kill -9 "$MEASURED" 2>/dev/null || true
    # TERM, not KILL: nginx's master stops its worker on TERM, while a
    # killed master leaves the worker running and listening.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Free loopback ports, all picked in one call.
read -r BACKEND_PORT REDIS_PORT PORT ADMIN_PORT EDGE_PORT <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)"

mkdir -p "$TMP/nginx/tmp"
sed -e "s#@PREFIX@#$TMP/nginx#g" -e "s#@PORT@#$BACKEND_PORT#g" \
    "$BENCH_DIR/nginx-backend.conf.in" >"$TMP/nginx.conf"
nginx -c "$TMP/nginx.conf" -p "$TMP/nginx" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
# The edge of the forward-auth targets: nginx auth_request asking whatever
# listens on $PORT, then proxying to the backend.
mkdir -p "$TMP/edge/tmp"
sed -e "s#@PREFIX@#$TMP/edge#g" -e "s#@PORT@#$EDGE_PORT#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
    -e "s#@AUTH_PORT@#$PORT#g" -e "s#@AUTH_PATH@#/_wristband/auth#g" \
    "$BENCH_DIR/nginx-auth-request.conf.in" >"$TMP/edge.conf"
nginx -c "$TMP/edge.conf" -p "$TMP/edge" >"$TMP/edge.log" 2>&1 &
PIDS+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
"$TARGET_DIR/release/examples/bench_tokens" "$TMP" >/dev/null || die "bench_tokens failed"
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$REDIS_PORT" HSET sessions:bench-session-0123456789 user_id bench-user roles a,b \
    >/dev/null || die "cannot seed the session in Redis"

# client PATH HEADER N [wait]: N requests over four new keep-alive
# connections to the measured target, each answered 200 "ok"; with `wait`,
# first until it answers at all (valgrind starts slowly).
client() {
    python3 - "${CLIENT_PORT:-$PORT}" "$1" "$2" "$3" "${4:-}" <<'PY'
import http.client, sys, time
port, path, header, n, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
name, _, value = header.partition(": ")
headers = {"Host": "bench", name: value} if name else {"Host": "bench"}
deadline = time.monotonic() + 60
while True:
    try:
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
        conns[0].request("GET", path, headers=headers)
        r = conns[0].getresponse(); r.read()
        if r.status == 200:
            break
    except OSError:
        pass
    if not wait or time.monotonic() > deadline:
        sys.exit(f"no 200 from :{port}{path}")
    time.sleep(0.2)
for i in range(n):
    c = conns[i % 4]
    c.request("GET", path, headers=headers)
    r = c.getresponse(); body = r.read()
    if r.status != 200 or body != b"ok":
        sys.exit(f"request {i}: {r.status} {body[:80]!r}")
PY
}

# count NAME PATH HEADER CACHE CMD...: instructions per request of CMD.
count() {
    local name=$1 path=$2 header=$3 cache=$4
    shift 4
    sed -e "s#@PORT@#$PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
        -e "s#@JWKS@#$TMP/jwks.json#g" -e "s#@CACHE@#$cache#g" -e "s#@REDIS_PORT@#$REDIS_PORT#g" \
        -e "s#@SESSION_CACHE@#${SESSION_CACHE:-0s}#g" "$BENCH_DIR/wristband.toml.in" >"$TMP/wristband.toml"
    # Under valgrind everything runs ~50x slower: the 250ms default would
    # time out Redis commands (and the cache's tracking set-up) at random.
    sed -i 's#^url = "redis://.*#&\ncommand_timeout = "10s"#' "$TMP/wristband.toml"
    if [ -n "${FORWARD_AUTH:-}" ]; then
        sed -i 's|^shutdown_grace = "1s"$|&\ntrusted_proxies = ["127.0.0.1/32"]|' "$TMP/wristband.toml"
        printf '\n[forward_auth]\n' >>"$TMP/wristband.toml"
    fi
    rm -f "$TMP"/callgrind.out.*
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out.%p" \
        "$@" >"$TMP/$name.log" 2>&1 &
    MEASURED=$!
    client "$path" "$header" 1000 wait || die "$name did not answer 200 ok; the end of its log: $(tail -5 "$TMP/$name.log")"
    callgrind_control -z "$MEASURED" >/dev/null 2>&1
    local totals=() seconds=() n dump started
    for n in idle "$N1" "$N2"; do
        started=$(date +%s.%N)
        if [ "$n" = idle ]; then
            sleep "$BACKGROUND_S"
        else
            client "$path" "$header" "$n" || die "$name did not answer 200 ok; the end of its log: $(tail -5 "$TMP/$name.log")"
        fi
        callgrind_control -d "$MEASURED" >/dev/null 2>&1
        seconds+=("$started-$(date +%s.%N)")
        # The phase's dump is the only one there: each is removed once read,
        # so a dump that never came is an error, not the last one counted twice.
        dump=$(ls "$TMP"/callgrind.out.*.* 2>/dev/null)
        [ -n "$dump" ] && [ "$(wc -l <<<"$dump")" -eq 1 ] ||
            die "$name: callgrind wrote no dump for the $n phase; the end of its log: $(tail -5 "$TMP/$name.log")"
        if [ -n "${KEEP_DIR:-}" ]; then
            mkdir -p "$KEEP_DIR" && cp "$dump" "$KEEP_DIR/$name.$n.callgrind"
        fi
        totals+=("$(awk '/^summary:/ {s += $2} END {print s + 0}' "$dump")")
        rm -f "$dump"
    done
    # Killed, not stopped (not every target exits on a signal), and reaped
    # here, and forgotten: a PID kept for the cleanup could by then name
    # some other process.
    kill -9 "$MEASURED" 2>/dev/null || true
    wait "$MEASURED" 2>/dev/null || true
    MEASURED=
    [ "${totals[1]}" -gt 0 ] && [ "${totals[2]}" -gt 0 ] ||
        die "$name: callgrind wrote no counts; the end of its log: $(tail -5 "$TMP/$name.log")"
    python3 - "$name" "$N1" "$N2" "${totals[@]}" "${seconds[@]}" <<'PY'
import sys
name, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
idle, a, b = map(int, sys.argv[4:7])
def length(span):
    start, end = map(float, span.split("-"))
    return end - start
t_idle, t_a, t_b = map(length, sys.argv[7:10])
rate = idle / t_idle
per = ((b - rate * t_b) - (a - rate * t_a)) / (n2 - n1)
print(f"[instructions] {name}: {rate:,.0f} instructions a second in the background; "
      f"{(b - a) / (n2 - n1):.0f} a request with it", file=sys.stderr)
print(f"| {name} | {per:.0f} |")
PY
}

token=$(cat "$TMP/token-rs256.txt")
echo "| target | instructions per request |"
echo "|---|---:|"
for target in $TARGETS; do
    log "$target"
    case $target in
        hyper-floor) count "$target" / "" 0 "$FLOOR_BIN" "127.0.0.1:$PORT" "127.0.0.1:$BACKEND_PORT" conn ;;
        hyper-floor-spec) count "$target" / "" 0 "$FLOOR_BIN" "127.0.0.1:$PORT" "127.0.0.1:$BACKEND_PORT" spec ;;
        hyper-floor-session)
            COMMAND_TIMEOUT_MS=10000 count "$target" / "" 0 "$FLOOR_BIN" "127.0.0.1:$PORT" "127.0.0.1:$BACKEND_PORT" \
                conn "redis://127.0.0.1:$REDIS_PORT/0" sessions:bench-session-0123456789
            ;;
        hyper-floor-session-spec)
            COMMAND_TIMEOUT_MS=10000 count "$target" / "Cookie: sid=bench-session-0123456789" 0 "$FLOOR_BIN" \
                "127.0.0.1:$PORT" "127.0.0.1:$BACKEND_PORT" spec "redis://127.0.0.1:$REDIS_PORT/0" sessions:
            ;;
        wristband) count "$target" / "" 0 "$WB_BIN" run --config "$TMP/wristband.toml" ;;
        wristband-rs256) count "$target" /api "Authorization: Bearer $token" 100000 "$WB_BIN" run --config "$TMP/wristband.toml" ;;
        wristband-rs256-nocache) count "$target" /api "Authorization: Bearer $token" 0 "$WB_BIN" run --config "$TMP/wristband.toml" ;;
        wristband-session) SESSION_CACHE=60s count "$target" /app "Cookie: sid=bench-session-0123456789" 0 "$WB_BIN" run --config "$TMP/wristband.toml" ;;
        wristband-forward-auth)
            FORWARD_AUTH=1 CLIENT_PORT=$EDGE_PORT count "$target" /api "Authorization: Bearer $token" 100000 \
                "$WB_BIN" run --config "$TMP/wristband.toml"
            ;;
        hyper-floor-auth)
            CLIENT_PORT=$EDGE_PORT count "$target" /api "Authorization: Bearer $token" 0 \
                "$FLOOR_AUTH_BIN" "127.0.0.1:$PORT"
            ;;
        wristband-session-nocache) count "$target" /app "Cookie: sid=bench-session-0123456789" 0 "$WB_BIN" run --config "$TMP/wristband.toml" ;;
        *) die "unknown target '$target'" ;;
    esac
done
