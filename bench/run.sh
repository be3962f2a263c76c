#!/usr/bin/env bash
# bench/run.sh: load-test wristband against nginx and HAProxy with wrk. See bench/README.md.
#
#   bench/run.sh                                  # defaults: pinned, 10s x 2 rounds
#   DURATION=3s ROUNDS=1 LAYOUT=both bench/run.sh
#   LAYOUT=redis-apart TARGETS="hyper-floor-session wristband-session-nocache" bench/run.sh   # Redis beside wrk
#   SWEEP=connections|routes|jwks|forward-auth|runtimes|idle bench/run.sh   # one of the sweeps instead
#
# Targets, interleaved A B C A B C ... for ROUNDS rounds:
#   direct                   wrk -> nginx backend (return 200 "ok")
#   nginx                    wrk -> nginx reverse proxy (upstream keep-alive) -> backend
#   haproxy                  wrk -> HAProxy reverse proxy (nbthread 1, http-reuse always) -> backend
#   haproxy-rs256            HAProxy verifying the RS256 token with jwt_verify (alg pinned, iss, aud, exp)
#   hyper-floor              wrk -> examples/bare_proxy.rs (hyper server + pooled hyper client, nothing else) -> backend
#   wristband                wrk -> wristband, public route -> backend
#   wristband-rs256          wristband, JWT route, RS256 token, verified-token cache on
#   wristband-rs256-nocache  the same with the cache off (every request verifies)
#   wristband-public-bearer  the public route sent the RS256 token too (not in the default list): the
#                            cost of carrying the header, for wristband-rs256 ÷ wristband
#   wristband-es256-nocache  an ES256 token, cache off
#   wristband-session        session route, Redis on loopback, session cache on (tracking)
#   wristband-session-nocache  the same with cache_ttl = "0s": one Redis lookup per request
#   hyper-floor-spec         hyper-floor plus the per-request work SPEC asks of a public route, written
#                            directly (bare_proxy.rs `spec`): the floor of the SPEC's rules on this
#                            stack, for wristband (public)
#   hyper-floor-session      hyper-floor plus one fred HGETALL per request: the stack's floor for
#                            wristband-session-nocache (compare it with hyper-floor)
#   hyper-floor-session-spec hyper-floor-spec plus what SPEC asks of a session route, written directly
#                            (bare_proxy.rs `spec` with Redis): cookie, id check, HGETALL, X-Auth-User;
#                            the floor of the SPEC's rules for wristband-session-nocache
# Sweeps (SWEEP=..., each against its baseline in the same run, interleaved):
#   connections  nginx and wristband (public) at each of CONNECTIONS_LIST (default "1 64 512")
#   routes       wristband with 1 route vs 10,000 routes (request to /r/9999, which exists)
#   jwks         wristband JWT route, cache off, jwks.json (2 keys) vs jwks-100.json (100 keys)
#   idle         wristband RSS with IDLE_CONNECTIONS (10000) idle keep-alive connections open
#   forward-auth nginx auth_request to wristband's forward-auth (RS256 token) vs nginx auth_request to
#                a trivial auth service (the backend's empty 200 at /auth), to the same in an nginx of its own,
#                and to hyper-floor-auth
#                (examples/bare_auth.rs: hyper's server answering an empty 200 with X-Auth-User, the
#                stack's floor); and the RS256 route with [revocation] on (1,000 revoked jtis held) vs off
# Prints one Markdown table per layout on stdout (progress goes to stderr) and
# writes them, with the machine and versions, to bench/results/latest.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
LAYOUT=${LAYOUT:-pinned}
TARGETS=${TARGETS:-direct nginx haproxy haproxy-rs256 hyper-floor hyper-floor-spec wristband wristband-rs256 wristband-rs256-nocache wristband-es256-nocache wristband-session wristband-session-nocache hyper-floor-session hyper-floor-session-spec}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
BUILD=${BUILD:-auto}
if [ -n "${SWEEP:-}" ]; then
    RESULTS=${RESULTS:-$BENCH_DIR/results/sweep-$SWEEP.md}
else
    RESULTS=${RESULTS:-$BENCH_DIR/results/latest.md}
fi
READY_TIMEOUT=${READY_TIMEOUT:-30}
SWEEP=${SWEEP:-}
CONNECTIONS_LIST=${CONNECTIONS_LIST:-1 64 512}
ROUTES_EXTRA=${ROUTES_EXTRA:-9999}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_TARGETS=${IDLE_TARGETS:-wristband hyper-floor nginx}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

case $LAYOUT in
    pinned) LAYOUTS=(pinned) ;;
    unpinned) LAYOUTS=(unpinned) ;;
    both) LAYOUTS=(pinned unpinned) ;;
    # pinned, but Redis on the load generator's CPU: production keeps Redis
    # on another host, so the proxy's core should not pay for it.
    redis-apart) LAYOUTS=(redis-apart) ;;
    *) die "LAYOUT must be pinned, unpinned, both or redis-apart (got '$LAYOUT')" ;;
esac
case $BUILD in auto | always | never) ;; *) die "BUILD must be auto, always or never (got '$BUILD')" ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
# A sweep replaces the target list with what it needs.
case $SWEEP in
    '') ;;
    connections)
        TARGETS="nginx wristband"
        for c in $CONNECTIONS_LIST; do
            [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS_LIST holds '$c', not a positive integer"
        done
        ;;
    routes | jwks | forward-auth) TARGETS="wristband" ;;
    runtimes) TARGETS="wristband hyper-floor" ;;
    idle)
        TARGETS="wristband"
        # The bare hyper proxy too, when asked: the stack's own floor.
        [[ " $IDLE_TARGETS " != *" hyper-floor "* ]] || TARGETS="wristband hyper-floor"
        ;;
    *) die "SWEEP must be connections, routes, jwks, forward-auth, runtimes or idle (got '$SWEEP')" ;;
esac
[[ $ROUTES_EXTRA =~ ^[0-9]+$ ]] || die "ROUTES_EXTRA must be a number (got '$ROUTES_EXTRA')"
[[ $IDLE_CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNECTIONS must be a positive integer (got '$IDLE_CONNECTIONS')"
for t in $TARGETS; do
    case $t in
        direct | nginx | haproxy | haproxy-rs256 | hyper-floor | wristband | wristband-rs256 | wristband-rs256-nocache | wristband-es256-nocache) ;;
        wristband-session | wristband-session-nocache | hyper-floor-session | hyper-floor-spec | wristband-public-bearer) ;;
        hyper-floor-session-spec) ;;
        *) die "unknown target '$t' in TARGETS" ;;
    esac
done

# --- tools -------------------------------------------------------------------
# nginx lives in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v getconf >/dev/null 2>&1 || need+=(libc-bin)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [[ " $TARGETS " == *" haproxy"* ]]; then
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
fi
if ((${#need[@]})); then
    log "installing missing tools: ${need[*]}"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${need[*]}"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

# --- wristband binary ----------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO_DIR/$TARGET_DIR ;; esac
if [ -n "${WRISTBAND_BIN:-}" ]; then
    BUILD=never # an explicit binary is used as it is
else
    WRISTBAND_BIN=$TARGET_DIR/release/wristband
fi
# Any wristband target needs the binary (and the JWT ones, wristband's and
# HAProxy's, the bench tokens).
WANT_WB=no
# The session floors read the session wristband's targets seed in their Redis.
[[ " $TARGETS " == *" wristband"* || " $TARGETS " == *" haproxy"* || " $TARGETS " == *" hyper-floor-session"* ]] &&
    WANT_WB=yes
TOKENS_BIN=$TARGET_DIR/release/examples/bench_tokens
FLOOR_BIN=$TARGET_DIR/release/examples/bare_proxy
FLOOR_AUTH_BIN=$TARGET_DIR/release/examples/bare_auth
if [ $WANT_WB = yes ]; then
    rebuild=no
    if [ "$BUILD" = always ]; then
        rebuild=yes
    elif [ "$BUILD" = auto ]; then
        if [ ! -x "$WRISTBAND_BIN" ]; then
            rebuild=yes
        elif [ -n "$(find "$REPO_DIR/src" "$REPO_DIR/Cargo.toml" "$REPO_DIR/Cargo.lock" \
            -newer "$WRISTBAND_BIN" -print -quit 2>/dev/null)" ]; then
            rebuild=yes # sources changed since the last build
        fi
    fi
    if [ $rebuild = yes ]; then
        log "building the release binary (cargo build --release, target dir $TARGET_DIR)"
        (cd "$REPO_DIR" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release) >&2 ||
            die "cargo build --release failed"
    fi
    if [ ! -x "$TOKENS_BIN" ] || [ -n "$(find "$REPO_DIR/examples" "$REPO_DIR/tests/common/tokens.rs" \
        -newer "$TOKENS_BIN" -print -quit 2>/dev/null)" ]; then
        log "building the token generator (cargo build --release --example bench_tokens)"
        (cd "$REPO_DIR" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --example bench_tokens) >&2 ||
            die "cargo build --release --example bench_tokens failed"
    fi
    [ -x "$WRISTBAND_BIN" ] || die "no wristband binary at $WRISTBAND_BIN"
fi
# hyper-floor: the stack without wristband (examples/bare_proxy.rs; its
# `spec` mode uses wristband's header names and id rule, hence src/).
if [[ " $TARGETS " == *" hyper-floor"* ]] && { [ ! -x "$FLOOR_BIN" ] ||
    [ -n "$(find "$REPO_DIR/examples/bare_proxy.rs" "$REPO_DIR/src" "$REPO_DIR/Cargo.lock" \
        -newer "$FLOOR_BIN" -print -quit 2>/dev/null)" ]; }; then
    log "building the bare hyper proxy (cargo build --release --example bare_proxy)"
    (cd "$REPO_DIR" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --example bare_proxy) >&2 ||
        die "cargo build --release --example bare_proxy failed"
fi
# hyper-floor-auth: the stack as a forward-auth service (examples/bare_auth.rs).
if [ "$SWEEP" = forward-auth ] && { [ ! -x "$FLOOR_AUTH_BIN" ] ||
    [ -n "$(find "$REPO_DIR/examples/bare_auth.rs" "$REPO_DIR/Cargo.lock" -newer "$FLOOR_AUTH_BIN" -print -quit 2>/dev/null)" ]; }; then
    log "building the bare hyper auth service (cargo build --release --example bare_auth)"
    (cd "$REPO_DIR" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --example bare_auth) >&2 ||
        die "cargo build --release --example bare_auth failed"
fi

# --- file descriptors -------------------------------------------------------------
# 512 wrk connections, HAProxy's maxconn and 10,000 idle connections need more
# descriptors than the usual soft limit of 1024: raise it to the hard limit
# (at most 65536) for this script and everything it starts.
hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=65536
((hard_nofile > 65536)) && hard_nofile=65536
ulimit -n "$hard_nofile" 2>/dev/null || log "could not raise ulimit -n to $hard_nofile (now $(ulimit -n))"

# --- scratch space and cleanup ---------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wristband-bench.XXXXXX")
STARTED_PIDS=()

stop_pids() {
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#STARTED_PIDS[@]})); then stop_pids "${STARTED_PIDS[@]}"; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers -----------------------------------------------------------------------
# N free loopback ports, all bound at once so they are distinct.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# http_status URL [HEADER]: the status of a GET ("000" if none).
http_status() {
    python3 - "$1" "${2:-}" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    name, value = sys.argv[2].split(":", 1)
    req.add_header(name.strip(), value.strip())
try:
    print(urllib.request.urlopen(req, timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

# http_body URL [HEADER]: the body of a GET, with an optional "Name: value" header.
http_body() {
    python3 - "$1" "${2:-}" <<'PY' 2>/dev/null || true
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    name, value = sys.argv[2].split(":", 1)
    req.add_header(name.strip(), value.strip())
sys.stdout.write(urllib.request.urlopen(req, timeout=2).read().decode("latin-1"))
PY
}

# wait_ready URL PID NAME: until URL answers 200; fail if PID dies first.
wait_ready() { # URL PID NAME [HEADER]
    local url=$1 pid=$2 name=$3 header=${4:-} deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited before it was ready"; return 1; }
        [ "$(http_status "$url" "$header")" = 200 ] && return 0
        sleep 0.2
    done
    log "$name not ready at $url after ${READY_TIMEOUT}s"
    return 1
}

render() { # TEMPLATE OUT KEY=VALUE...
    local template=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
}

# start_nginx NAME TEMPLATE PORT [KEY=VALUE...]; sets STARTED_PID.
start_nginx() {
    local name=$1 template=$2 port=$3 prefix=$TMP/$1
    shift 3
    mkdir -p "$prefix/tmp"
    render "$template" "$prefix/nginx.conf" "PREFIX=$prefix" "PORT=$port" "$@"
    "${PIN_SERVER[@]}" nginx -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" \
        >"$prefix/stdout.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
    if ! wait_ready "http://127.0.0.1:$port/" "$STARTED_PID" "nginx ($name)"; then
        tail -n 20 "$prefix/error.log" "$prefix/stdout.log" >&2 2>/dev/null || true
        return 1
    fi
}

# A process and its direct children (nginx master + workers).
pid_tree() {
    local pid
    for pid in "$@"; do
        echo "$pid"
        pgrep -P "$pid" || true
    done
}

# Sum of utime+stime (fields 14, 15 of /proc/PID/stat; all threads) in ticks.
cpu_ticks() {
    local total=0 pid stat f
    for pid in $(pid_tree "$@"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"${stat##*) }" # fields from 3 on: field N is f[N-3]
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

to_ms() { # wrk's "612.00us" / "1.20ms" / "2.00s" / "1.00m" -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) print "nan"; else printf "%.3f", n * f
    }'
}

# run_wrk LAYOUT ROUND TARGET PORT SERVER_PIDS...: one measured run, appended to RAW.
# WRK_PATH (default /) and WRK_HEADER (an extra request header) shape the request.
run_wrk() {
    local layout=$1 round=$2 target=$3 port=$4 url out t0 t1
    shift 4
    url="http://127.0.0.1:$port${WRK_PATH:-/}"
    local header=()
    [ -n "${WRK_HEADER:-}" ] && header=(-H "$WRK_HEADER")
    out=$TMP/wrk-$layout-$round-$target.txt
    log "$layout round $round/$ROUNDS: $target (warm-up $WARMUP, then $DURATION)"
    if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
        "${PIN_LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${header[@]}" "$url" >/dev/null
    fi
    local c0 c1
    c0=$(redis_commands)
    t0=$(cpu_ticks "$@")
    "${PIN_LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" "$url" >"$out"
    t1=$(cpu_ticks "$@")
    c1=$(redis_commands)
    local rps requests p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    requests=$(awk '/ requests in / {print $1}' "$out")
    p50=$(to_ms "$(awk '/Latency Distribution/ {d = 1} d && $1 == "50%" {print $2; exit}' "$out")")
    p99=$(to_ms "$(awk '/Latency Distribution/ {d = 1} d && $1 == "99%" {print $2; exit}' "$out")")
    errors=$(awk '
        /Non-2xx or 3xx responses:/ {e += $NF}
        /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i + 0}
        END {print e + 0}' "$out")
    if [ -z "$rps" ] || [ -z "$requests" ]; then
        cat "$out" >&2
        die "could not parse wrk output"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$layout" "$round" "$target" "$rps" "$p50" "$p99" "$requests" "$((t1 - t0))" "$errors" "$((c1 - c0))" >>"$RAW"
}

# redis_commands: commands the bench Redis has processed (0 without one). The
# counter includes this INFO call itself, which is subtracted.
redis_commands() {
    if [ -z "${REDIS_PORT:-}" ]; then
        echo 0
        return
    fi
    redis-cli -p "$REDIS_PORT" INFO stats | awk -F: '/^total_commands_processed:/ {print $2 + 0}'
}

# start_wristband LAYOUT NAME PORT ADMIN_PORT CACHE_SIZE SESSION_CACHE: sets STARTED_WB to the PID
# once it serves both routes (public, and JWT with the RS256 token), else to "".
start_wristband() {
    local layout=$1 name=$2 port=$3 admin=$4 cache=$5 session_cache=$6 cfg log pid wb_env=()
    cfg=$TMP/wristband-$layout-$name.toml
    log=$TMP/wristband-$layout-$name.log
    render "$BENCH_DIR/wristband.toml.in" "$cfg" \
        "PORT=$port" "ADMIN_PORT=$admin" "BACKEND_PORT=$BACKEND_PORT" \
        "JWKS=$KEYS/jwks.json" "CACHE=$cache" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=$session_cache"
    [ -n "$WORKERS" ] && wb_env=("TOKIO_WORKER_THREADS=$WORKERS")
    env "${wb_env[@]}" "${PIN_SERVER[@]}" "$WRISTBAND_BIN" run --config "$cfg" >"$log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    local token
    token=$(cat "$KEYS/token-rs256.txt")
    STARTED_WB=
    if wait_ready "http://127.0.0.1:$admin/readyz" "$pid" "wristband ($name)" &&
        [ "$(http_body "http://127.0.0.1:$port/")" = ok ] &&
        [ "$(http_body "http://127.0.0.1:$port/api" "Authorization: Bearer $token")" = ok ] &&
        [ "$(http_status "http://127.0.0.1:$port/api")" = 401 ] &&
        [ "$(http_body "http://127.0.0.1:$port/app" "Cookie: sid=$BENCH_SESSION")" = ok ]; then
        STARTED_WB=$pid
    else
        log "wristband ($name) is not serving both routes; its output:"
        tail -n 20 "$log" >&2 || true
        echo "$layout: wristband ($name cache) did not start or did not proxy" >>"$NOTES"
        stop_pids "$pid"
    fi
}

# jwks_pem JWKS KID: the RSA key KID of JWKS as a PEM SubjectPublicKeyInfo
# (what HAProxy's jwt_verify takes), DER built by hand from n and e.
jwks_pem() {
    python3 - "$1" "$2" <<'PY'
import base64, json, sys

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body

def uint(b64):  # base64url big-endian -> DER INTEGER (positive)
    b = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).lstrip(b"\0") or b"\0"
    return tlv(0x02, b"\0" + b if b[0] & 0x80 else b)

jwks, kid = json.load(open(sys.argv[1])), sys.argv[2]
key = next(k for k in jwks["keys"] if k.get("kid") == kid and k["kty"] == "RSA")
rsa_public_key = tlv(0x30, uint(key["n"]) + uint(key["e"]))
algorithm = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")  # rsaEncryption, NULL
spki = tlv(0x30, algorithm + tlv(0x03, b"\0" + rsa_public_key))
b64 = base64.b64encode(spki).decode()
print("-----BEGIN PUBLIC KEY-----")
for i in range(0, len(b64), 64):
    print(b64[i:i + 64])
print("-----END PUBLIC KEY-----")
PY
}

# start_haproxy LAYOUT PORT JWT_PORT: sets HAPROXY_PID once the plain frontend
# proxies, the JWT frontend answers 200 with the RS256 token and 401 without.
start_haproxy() {
    local layout=$1 port=$2 jwt_port=$3 dir=$TMP/haproxy-$1 token
    mkdir -p "$dir"
    jwks_pem "$KEYS/jwks.json" bench-rs >"$dir/bench-rs.pem" || die "cannot derive the PEM of bench-rs from jwks.json"
    render "$BENCH_DIR/haproxy.cfg.in" "$dir/haproxy.cfg" "PORT=$port" "JWT_PORT=$jwt_port" \
        "BACKEND_PORT=$BACKEND_PORT" "PEM=$dir/bench-rs.pem"
    haproxy -c -q -f "$dir/haproxy.cfg" >&2 || die "HAProxy rejects $dir/haproxy.cfg"
    "${PIN_SERVER[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    STARTED_PIDS+=("$HAPROXY_PID")
    token=$(cat "$KEYS/token-rs256.txt")
    if ! wait_ready "http://127.0.0.1:$port/" "$HAPROXY_PID" "haproxy ($layout)" ||
        [ "$(http_body "http://127.0.0.1:$port/")" != ok ] ||
        [ "$(http_body "http://127.0.0.1:$jwt_port/" "Authorization: Bearer $token")" != ok ] ||
        [ "$(http_status "http://127.0.0.1:$jwt_port/")" != 401 ] ||
        [ "$(http_status "http://127.0.0.1:$jwt_port/" "Authorization: Bearer ${token%.*}.AAAA")" != 401 ]; then
        tail -n 20 "$dir/haproxy.log" >&2 || true
        die "HAProxy does not proxy, or its JWT frontend does not answer 200 with the token and 401 without or with a bad one"
    fi
}

# start_wb_cfg NAME CONFIG PORT ADMIN_PORT PATH [HEADER]: start wristband with
# CONFIG; sets STARTED_WB to the PID once PATH (with HEADER) answers "ok", else die.
start_wb_cfg() {
    local name=$1 cfg=$2 port=$3 admin=$4 path=$5 hdr=${6:-} log=$TMP/wristband-$1.log pid wb_env=()
    [ -n "$WORKERS" ] && wb_env=("TOKIO_WORKER_THREADS=$WORKERS")
    env "${wb_env[@]}" "${PIN_SERVER[@]}" "$WRISTBAND_BIN" run --config "$cfg" >"$log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    if wait_ready "http://127.0.0.1:$admin/readyz" "$pid" "wristband ($name)" &&
        [ "$(http_body "http://127.0.0.1:$port$path" "$hdr")" = ok ]; then
        STARTED_WB=$pid
    else
        tail -n 20 "$log" >&2 || true
        die "wristband ($name) did not start or does not answer $path"
    fi
}

# routes_cfg OUT PORT ADMIN_PORT EXTRA: the one-route config plus EXTRA routes
# /r/1 .. /r/EXTRA (every tenth also bound to a host hN.bench.invalid).
routes_cfg() {
    local out=$1 port=$2 admin=$3 extra=$4
    render "$BENCH_DIR/wristband-routes.toml.in" "$out" "PORT=$port" "ADMIN_PORT=$admin" "BACKEND_PORT=$BACKEND_PORT"
    python3 - "$extra" >>"$out" <<'PY'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    host = f'host = "h{i}.bench.invalid"\n' if i % 10 == 0 else ""
    print(f'\n[[routes]]\nname = "r{i}"\n{host}path = "/r/{i}"\nupstream = "backend"\nauth = "public"')
PY
}

# idle_rss LAYOUT NAME PORT N PID...: open N keep-alive connections to PORT,
# one request each, hold them idle and read the summed VmRSS of the PIDs (and
# their children); appends a row to IDLE_RAW.
idle_rss() {
    local layout=$1 name=$2 port=$3 n=$4
    shift 4
    log "$layout: opening $n idle keep-alive connections to $name (:$port)"
    # shellcheck disable=SC2046 # one PID per word
    "${PIN_LOAD[@]}" timeout 300 python3 - "$layout" "$name" "$port" "$n" $(pid_tree "$@") >>"$IDLE_RAW" <<'PY'
import asyncio, os, resource, sys, time

layout, name, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pids = [int(p) for p in sys.argv[5:]]
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

def rss_kb():
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

async def one(sem, conns):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(REQ)
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head[:40])
        conns.append((r, w))

async def main():
    before = rss_kb()
    sem, conns = asyncio.Semaphore(200), []
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(one(sem, conns) for _ in range(n)), return_exceptions=True), 240)
    failed = [r for r in results if isinstance(r, BaseException)]
    took = time.monotonic() - t0
    await asyncio.sleep(2)  # let the server settle
    # every connection still open (the server has not closed any)?
    open_now = sum(1 for r, w in conns if not r.at_eof())
    during = rss_kb()
    fds = sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)
    for _, w in conns:
        w.close()
    await asyncio.sleep(2)
    after = rss_kb()
    print(f"{layout}\t{name}\t{n}\t{len(conns)}\t{open_now}\t{len(failed)}\t{before}\t{during}\t{after}\t{fds}\t{took:.1f}")
    if failed:
        print(f"first failure: {failed[0]!r}", file=sys.stderr)

asyncio.run(main())
PY
}

# --- the run -------------------------------------------------------------------------
RAW=$TMP/raw.tsv
: >"$RAW"
NOTES=$TMP/notes.txt
: >"$NOTES"
IDLE_RAW=$TMP/idle.tsv
: >"$IDLE_RAW"
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

for layout in "${LAYOUTS[@]}"; do
    if [ "$layout" != unpinned ]; then
        if ((NPROC < 2)); then
            log "only $NPROC CPU: pinning servers and wrk apart is impossible, skipping the pinned layout"
            echo "pinned: skipped, only $NPROC CPU" >>"$NOTES"
            continue
        fi
        PIN_SERVER=(taskset -c "$SERVER_CPUS")
        PIN_LOAD=(taskset -c "$LOAD_CPUS")
        WORKERS=${WRISTBAND_WORKERS:-1}
    else
        PIN_SERVER=(env)
        PIN_LOAD=(env)
        WORKERS=${WRISTBAND_WORKERS:-}
    fi
    # Redis beside the servers, and its CPU counted as theirs; with
    # redis-apart, beside wrk and not counted (a store on another host).
    PIN_REDIS=("${PIN_SERVER[@]}")
    [ "$layout" = redis-apart ] && PIN_REDIS=("${PIN_LOAD[@]}")

    # Every port the layout's servers bind, picked in one call: ports picked
    # apart can repeat (a port is only free until someone binds it).
    read -r BACKEND_PORT NGINX_PORT WB_PORT WB_ADMIN_PORT WBN_PORT WBN_ADMIN_PORT REDIS_PORT FLOOR_PORT \
        FLOOR_SESSION_PORT FLOOR_SPEC_PORT FLOOR_SESSION_SPEC_PORT <<<"$(free_ports 11)"
    log "layout $layout: backend :$BACKEND_PORT, nginx :$NGINX_PORT, wristband :$WB_PORT (admin :$WB_ADMIN_PORT)"

    start_nginx "backend-$layout" "$BENCH_DIR/nginx-backend.conf.in" "$BACKEND_PORT" ||
        die "the backend nginx did not start"
    BACKEND_PID=$STARTED_PID
    layout_pids=("$BACKEND_PID")

    NGINX_PID=
    if [[ " $TARGETS " == *" nginx "* ]]; then
        start_nginx "proxy-$layout" "$BENCH_DIR/nginx-proxy.conf.in" "$NGINX_PORT" \
            "BACKEND_PORT=$BACKEND_PORT" || die "the proxy nginx did not start"
        NGINX_PID=$STARTED_PID
        [ "$(http_body "http://127.0.0.1:$NGINX_PORT/")" = ok ] || die "the proxy nginx does not reach the backend"
        layout_pids+=("$NGINX_PID")
    fi

    # start_floor PORT LABEL DESCRIPTION ARGS...: bare_proxy on PORT in front
    # of the backend, with ARGS after the backend (its mode, and Redis), its
    # log in floor-LABEL-LAYOUT.log; its PID in STARTED_FLOOR.
    # FLOOR_READY_HEADER: a header the floor needs to answer 200.
    start_floor() {
        local port=$1 label=$2 what=$3 floor_env=()
        shift 3
        [ -n "$WORKERS" ] && floor_env=("TOKIO_WORKER_THREADS=$WORKERS")
        env "${floor_env[@]}" "${PIN_SERVER[@]}" "$FLOOR_BIN" "127.0.0.1:$port" \
            "127.0.0.1:$BACKEND_PORT" "$@" >"$TMP/floor-$label-$layout.log" 2>&1 &
        STARTED_FLOOR=$!
        STARTED_PIDS+=("$STARTED_FLOOR")
        wait_ready "http://127.0.0.1:$port/" "$STARTED_FLOOR" "$what" "${FLOOR_READY_HEADER:-}" ||
            die "the $what did not start"
        layout_pids+=("$STARTED_FLOOR")
    }
    FLOOR_PID=
    if [[ " $TARGETS " == *" hyper-floor "* ]]; then
        start_floor "$FLOOR_PORT" conn "bare hyper proxy" conn
        FLOOR_PID=$STARTED_FLOOR
    fi
    FLOOR_SPEC_PID=
    if [[ " $TARGETS " == *" hyper-floor-spec "* ]]; then
        start_floor "$FLOOR_SPEC_PORT" spec "bare hyper proxy with the SPEC's rules" spec
        FLOOR_SPEC_PID=$STARTED_FLOOR
    fi

    # Two wristband processes: the verified-token cache on (WB) and off (WBN).
    WB_PID=
    WBN_PID=
    if [ $WANT_WB = yes ]; then
        KEYS=$TMP/keys
        mkdir -p "$KEYS"
        "$TOKENS_BIN" "$KEYS" || die "bench_tokens failed"
        # Sessions live in a Redis of the bench's own, pinned with the servers
        # (redis-apart: with wrk).
        "${PIN_REDIS[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
            --appendonly no --dir "$TMP" --daemonize no >"$TMP/redis-$layout.log" 2>&1 &
        REDIS_PID=$!
        CPU_REDIS_PID=$REDIS_PID
        [ "$layout" = redis-apart ] && CPU_REDIS_PID=
        STARTED_PIDS+=("$REDIS_PID")
        layout_pids+=("$REDIS_PID")
        for _ in $(seq 50); do
            [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
        BENCH_SESSION=bench-session-0123456789
        redis-cli -p "$REDIS_PORT" HSET "sessions:$BENCH_SESSION" user_id bench-user roles "a,b" >/dev/null ||
            die "cannot seed the bench session in Redis"
        start_wristband "$layout" on "$WB_PORT" "$WB_ADMIN_PORT" 100000 30s
        WB_PID=$STARTED_WB
        start_wristband "$layout" off "$WBN_PORT" "$WBN_ADMIN_PORT" 0 0s
        WBN_PID=$STARTED_WB
        for pid in $WB_PID $WBN_PID; do layout_pids+=("$pid"); done
    fi

    FLOOR_SESSION_PID=
    if [[ " $TARGETS " == *" hyper-floor-session "* ]]; then
        start_floor "$FLOOR_SESSION_PORT" session "bare hyper proxy with Redis" \
            conn "redis://127.0.0.1:$REDIS_PORT/0" "sessions:$BENCH_SESSION"
        FLOOR_SESSION_PID=$STARTED_FLOOR
    fi
    FLOOR_SESSION_SPEC_PID=
    if [[ " $TARGETS " == *" hyper-floor-session-spec "* ]]; then
        FLOOR_READY_HEADER="Cookie: sid=$BENCH_SESSION" start_floor "$FLOOR_SESSION_SPEC_PORT" session-spec \
            "bare hyper proxy with Redis and the SPEC's rules" \
            spec "redis://127.0.0.1:$REDIS_PORT/0" "sessions:"
        FLOOR_SESSION_SPEC_PID=$STARTED_FLOOR
    fi

    HAPROXY_PID=
    if [[ " $TARGETS " == *" haproxy"* ]]; then
        read -r HAPROXY_PORT HAPROXY_JWT_PORT <<<"$(free_ports 2)"
        start_haproxy "$layout" "$HAPROXY_PORT" "$HAPROXY_JWT_PORT"
        layout_pids+=("$HAPROXY_PID")
    fi

    # The sweeps: each variant against its baseline, interleaved, same run.
    case $SWEEP in
        connections)
            [ -n "$WB_PID" ] || die "wristband did not start"
            base_connections=$CONNECTIONS
            for ((round = 1; round <= ROUNDS; round++)); do
                for c in $CONNECTIONS_LIST; do
                    CONNECTIONS=$c
                    run_wrk "$layout" "$round" "nginx@$c" "$NGINX_PORT" "$BACKEND_PID" "$NGINX_PID"
                    run_wrk "$layout" "$round" "wristband@$c" "$WB_PORT" "$BACKEND_PID" "$WB_PID"
                done
            done
            CONNECTIONS=$base_connections
            ;;
        routes)
            read -r R1_PORT R1_ADMIN R2_PORT R2_ADMIN <<<"$(free_ports 4)"
            routes_cfg "$TMP/routes-1.toml" "$R1_PORT" "$R1_ADMIN" 0
            routes_cfg "$TMP/routes-many.toml" "$R2_PORT" "$R2_ADMIN" "$ROUTES_EXTRA"
            WRK_PATH=/r/$ROUTES_EXTRA
            start_wb_cfg "$layout-routes-1" "$TMP/routes-1.toml" "$R1_PORT" "$R1_ADMIN" "$WRK_PATH"
            R1_PID=$STARTED_WB
            start_wb_cfg "$layout-routes-many" "$TMP/routes-many.toml" "$R2_PORT" "$R2_ADMIN" "$WRK_PATH"
            R2_PID=$STARTED_WB
            layout_pids+=("$R1_PID" "$R2_PID")
            for ((round = 1; round <= ROUNDS; round++)); do
                run_wrk "$layout" "$round" "wristband-1-route" "$R1_PORT" "$BACKEND_PID" "$R1_PID"
                run_wrk "$layout" "$round" "wristband-$((ROUTES_EXTRA + 1))-routes" "$R2_PORT" "$BACKEND_PID" "$R2_PID"
            done
            WRK_PATH=''
            ;;
        jwks)
            # Two more wristbands, verified-token cache off, differing only in the key set.
            read -r J1_PORT J1_ADMIN J2_PORT J2_ADMIN <<<"$(free_ports 4)"
            WRK_PATH=/api WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-rs256.txt")"
            render "$BENCH_DIR/wristband.toml.in" "$TMP/jwks-1.toml" \
                "PORT=$J1_PORT" "ADMIN_PORT=$J1_ADMIN" "BACKEND_PORT=$BACKEND_PORT" \
                "JWKS=$KEYS/jwks.json" "CACHE=0" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=0s"
            render "$BENCH_DIR/wristband.toml.in" "$TMP/jwks-2.toml" \
                "PORT=$J2_PORT" "ADMIN_PORT=$J2_ADMIN" "BACKEND_PORT=$BACKEND_PORT" \
                "JWKS=$KEYS/jwks-100.json" "CACHE=0" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=0s"
            start_wb_cfg "$layout-jwks-small" "$TMP/jwks-1.toml" "$J1_PORT" "$J1_ADMIN" "$WRK_PATH" "$WRK_HEADER"
            J1_PID=$STARTED_WB
            start_wb_cfg "$layout-jwks-big" "$TMP/jwks-2.toml" "$J2_PORT" "$J2_ADMIN" "$WRK_PATH" "$WRK_HEADER"
            J2_PID=$STARTED_WB
            layout_pids+=("$J1_PID" "$J2_PID")
            keys_small=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["keys"]))' "$KEYS/jwks.json")
            keys_big=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["keys"]))' "$KEYS/jwks-100.json")
            for ((round = 1; round <= ROUNDS; round++)); do
                run_wrk "$layout" "$round" "wristband-rs256-nocache-jwks-$keys_small-keys" "$J1_PORT" "$BACKEND_PID" "$J1_PID"
                run_wrk "$layout" "$round" "wristband-rs256-nocache-jwks-$keys_big-keys" "$J2_PORT" "$BACKEND_PID" "$J2_PID"
            done
            WRK_PATH='' WRK_HEADER=''
            ;;
        forward-auth)
            [ -n "$WB_PID" ] || die "wristband did not start"
            read -r FA_PORT FA_ADMIN RV_PORT RV_ADMIN NT_PORT NW_PORT HF_PORT NH_PORT SA_PORT NS_PORT <<<"$(free_ports 10)"
            token=$(cat "$KEYS/token-rs256.txt")
            # wristband answering nginx: the bench config, nginx trusted, [forward_auth] on.
            render "$BENCH_DIR/wristband.toml.in" "$TMP/forward-auth.toml" \
                "PORT=$FA_PORT" "ADMIN_PORT=$FA_ADMIN" "BACKEND_PORT=$BACKEND_PORT" \
                "JWKS=$KEYS/jwks.json" "CACHE=100000" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=30s"
            sed -i 's|^shutdown_grace = "1s"$|&\ntrusted_proxies = ["127.0.0.1/32"]|' "$TMP/forward-auth.toml"
            printf '\n[forward_auth]\n' >>"$TMP/forward-auth.toml"
            start_wb_cfg "$layout-forward-auth" "$TMP/forward-auth.toml" "$FA_PORT" "$FA_ADMIN" / ""
            FA_PID=$STARTED_WB
            # The wristband-rs256 config with [revocation] on and 1,000 revoked jtis in
            # Redis (none of them the bench token's), loaded before it is ready.
            python3 - "$(($(date +%s) + 3600))" <<'PY' | redis-cli -p "$REDIS_PORT" >/dev/null ||
import sys
args = " ".join(f"revoked:jti:bench-revoked-{i} {sys.argv[1]}" for i in range(1000))
print(f"MSET {args}")
PY
                die "cannot write the revoked jtis to Redis"
            render "$BENCH_DIR/wristband.toml.in" "$TMP/revocation.toml" \
                "PORT=$RV_PORT" "ADMIN_PORT=$RV_ADMIN" "BACKEND_PORT=$BACKEND_PORT" \
                "JWKS=$KEYS/jwks.json" "CACHE=100000" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=30s"
            printf '\n[revocation]\n' >>"$TMP/revocation.toml"
            start_wb_cfg "$layout-revocation" "$TMP/revocation.toml" "$RV_PORT" "$RV_ADMIN" /api \
                "Authorization: Bearer $token"
            RV_PID=$STARTED_WB
            held=$(http_body "http://127.0.0.1:$RV_ADMIN/metrics" |
                awk '/^wristband_revocations\{kind="jti"\}/ {print $2}')
            [ "$held" = 1000 ] || die "the revocation wristband holds '$held' revoked jtis, not 1000"
            start_nginx "auth-trivial-$layout" "$BENCH_DIR/nginx-auth-request.conf.in" "$NT_PORT" \
                "BACKEND_PORT=$BACKEND_PORT" "AUTH_PORT=$BACKEND_PORT" "AUTH_PATH=/auth" ||
                die "the auth_request nginx (trivial auth) did not start"
            NT_PID=$STARTED_PID
            start_nginx "auth-wristband-$layout" "$BENCH_DIR/nginx-auth-request.conf.in" "$NW_PORT" \
                "BACKEND_PORT=$BACKEND_PORT" "AUTH_PORT=$FA_PORT" "AUTH_PATH=/_wristband/auth" ||
                die "the auth_request nginx (wristband) did not start"
            NW_PID=$STARTED_PID
            # The trivial auth service in a process of its own (another nginx
            # like the backend, asked at /auth), as wristband and the floor are:
            # what moving the empty 200 out of the backend costs by itself.
            start_nginx "auth-separate-$layout" "$BENCH_DIR/nginx-backend.conf.in" "$SA_PORT" ||
                die "the separate trivial auth nginx did not start"
            SA_PID=$STARTED_PID
            start_nginx "auth-request-separate-$layout" "$BENCH_DIR/nginx-auth-request.conf.in" "$NS_PORT" \
                "BACKEND_PORT=$BACKEND_PORT" "AUTH_PORT=$SA_PORT" "AUTH_PATH=/auth" ||
                die "the auth_request nginx (separate trivial auth) did not start"
            NS_PID=$STARTED_PID
            # The stack's floor as the auth service: hyper's server answering
            # every question 200 with X-Auth-User, nothing else.
            floor_env=()
            [ -n "$WORKERS" ] && floor_env=("TOKIO_WORKER_THREADS=$WORKERS")
            env "${floor_env[@]}" "${PIN_SERVER[@]}" "$FLOOR_AUTH_BIN" "127.0.0.1:$HF_PORT" \
                >"$TMP/floor-auth-$layout.log" 2>&1 &
            HF_PID=$!
            STARTED_PIDS+=("$HF_PID")
            wait_ready "http://127.0.0.1:$HF_PORT/" "$HF_PID" "bare hyper auth service" ||
                die "the bare hyper auth service did not start"
            start_nginx "auth-floor-$layout" "$BENCH_DIR/nginx-auth-request.conf.in" "$NH_PORT" \
                "BACKEND_PORT=$BACKEND_PORT" "AUTH_PORT=$HF_PORT" "AUTH_PATH=/_wristband/auth" ||
                die "the auth_request nginx (hyper floor) did not start"
            NH_PID=$STARTED_PID
            [ "$(http_body "http://127.0.0.1:$NH_PORT/api")" = ok ] ||
                die "nginx + the bare hyper auth service does not answer 200"
            [ "$(http_body "http://127.0.0.1:$NW_PORT/api" "Authorization: Bearer $token")" = ok ] &&
                [ "$(http_status "http://127.0.0.1:$NW_PORT/api")" = 401 ] &&
                [ "$(http_status "http://127.0.0.1:$NW_PORT/api" "Authorization: Bearer ${token%.*}.AAAA")" = 401 ] ||
                die "nginx + forward-auth does not answer 200 with the token and 401 without or with a bad one"
            layout_pids+=("$FA_PID" "$RV_PID" "$NT_PID" "$NW_PID" "$HF_PID" "$NH_PID" "$SA_PID" "$NS_PID")
            WRK_PATH=/api WRK_HEADER="Authorization: Bearer $token"
            for ((round = 1; round <= ROUNDS; round++)); do
                run_wrk "$layout" "$round" nginx-auth-request-trivial "$NT_PORT" "$BACKEND_PID" "$NT_PID"
                run_wrk "$layout" "$round" nginx-auth-request-separate "$NS_PORT" "$BACKEND_PID" "$NS_PID" "$SA_PID"
                run_wrk "$layout" "$round" hyper-floor-auth "$NH_PORT" "$BACKEND_PID" "$NH_PID" "$HF_PID"
                run_wrk "$layout" "$round" wristband-forward-auth "$NW_PORT" "$BACKEND_PID" "$NW_PID" "$FA_PID"
                run_wrk "$layout" "$round" wristband-rs256 "$WB_PORT" "$BACKEND_PID" "$WB_PID"
                run_wrk "$layout" "$round" wristband-rs256-revocation-1000 "$RV_PORT" "$BACKEND_PID" "$RV_PID"
            done
            WRK_PATH='' WRK_HEADER=''
            ;;
        runtimes)
            # Issue 16, both cores: nginx with 2 workers; wristband (public
            # route) on 1 thread, on tokio's work-stealing pool of 2, and on
            # 2 threads with a runtime each (WRISTBAND_RUNTIME=per-thread);
            # the bare hyper proxy with WORKERS (the layout's) as the floor.
            [ -n "$WB_PID" ] || die "wristband did not start"
            read -r N2_PORT <<<"$(free_ports 1)"
            sed 's/^worker_processes 1;/worker_processes 2;/' "$BENCH_DIR/nginx-proxy.conf.in" \
                >"$TMP/nginx-proxy-2.conf.in"
            start_nginx "proxy2-$layout" "$TMP/nginx-proxy-2.conf.in" "$N2_PORT" \
                "BACKEND_PORT=$BACKEND_PORT" || die "the 2-worker nginx did not start"
            N2_PID=$STARTED_PID
            layout_pids+=("$N2_PID")
            runtime_targets=()
            for variant in 1:shared 2:shared 2:per-thread; do
                read -r V_PORT V_ADMIN <<<"$(free_ports 2)"
                render "$BENCH_DIR/wristband.toml.in" "$TMP/runtime-$variant.toml" \
                    "PORT=$V_PORT" "ADMIN_PORT=$V_ADMIN" "BACKEND_PORT=$BACKEND_PORT" \
                    "JWKS=$KEYS/jwks.json" "CACHE=100000" "REDIS_PORT=$REDIS_PORT" "SESSION_CACHE=30s"
                WORKERS=${variant%%:*} WRISTBAND_RUNTIME=${variant#*:} \
                    start_wb_cfg "$layout-runtime-$variant" "$TMP/runtime-$variant.toml" "$V_PORT" "$V_ADMIN" /
                layout_pids+=("$STARTED_WB")
                runtime_targets+=("wristband-${variant%%:*}-${variant#*:}:$V_PORT:$STARTED_WB")
            done
            for ((round = 1; round <= ROUNDS; round++)); do
                run_wrk "$layout" "$round" nginx-2-workers "$N2_PORT" "$BACKEND_PID" "$N2_PID"
                for t in "${runtime_targets[@]}"; do
                    IFS=: read -r name port pid <<<"$t"
                    run_wrk "$layout" "$round" "$name" "$port" "$BACKEND_PID" "$pid"
                done
                [ -z "$FLOOR_PID" ] ||
                    run_wrk "$layout" "$round" "hyper-floor-${WORKERS:-default}" "$FLOOR_PORT" "$BACKEND_PID" "$FLOOR_PID"
            done
            ;;
        idle)
            read -r I_PORT I_ADMIN <<<"$(free_ports 2)"
            routes_cfg "$TMP/idle.toml" "$I_PORT" "$I_ADMIN" 0
            start_wb_cfg "$layout-idle" "$TMP/idle.toml" "$I_PORT" "$I_ADMIN" /
            layout_pids+=("$STARTED_WB")
            idle_rss "$layout" wristband "$I_PORT" "$IDLE_CONNECTIONS" "$STARTED_WB" ||
                die "the idle-connection client failed"
            # The same against the bare hyper proxy: what hyper's HTTP/1
            # server and client keep per connection, without wristband.
            if [[ " $IDLE_TARGETS " == *" hyper-floor "* ]]; then
                idle_rss "$layout" hyper-floor "$FLOOR_PORT" "$IDLE_CONNECTIONS" "$FLOOR_PID" ||
                    die "the idle-connection client failed"
            fi
            # The same against the nginx proxy (master + worker), for scale; its
            # worker_connections raised for the occasion.
            if [[ " $IDLE_TARGETS " == *" nginx "* ]]; then
                sed 's/worker_connections 4096;/worker_connections 25000;/' "$BENCH_DIR/nginx-proxy.conf.in" \
                    >"$TMP/nginx-proxy-idle.conf.in"
                I_NGINX_PORT=$(free_ports 1)
                start_nginx "proxy-idle-$layout" "$TMP/nginx-proxy-idle.conf.in" "$I_NGINX_PORT" \
                    "BACKEND_PORT=$BACKEND_PORT" || die "the idle nginx proxy did not start"
                layout_pids+=("$STARTED_PID")
                idle_rss "$layout" nginx "$I_NGINX_PORT" "$IDLE_CONNECTIONS" "$STARTED_PID" ||
                    die "the idle-connection client failed"
            fi
            ;;
    esac

    for ((round = 1; round <= ROUNDS; round++)); do
        [ -z "$SWEEP" ] || break
        for target in $TARGETS; do
            case $target in
                direct) run_wrk "$layout" "$round" direct "$BACKEND_PORT" "$BACKEND_PID" ;;
                nginx) run_wrk "$layout" "$round" nginx "$NGINX_PORT" "$BACKEND_PID" "$NGINX_PID" ;;
                haproxy) run_wrk "$layout" "$round" haproxy "$HAPROXY_PORT" "$BACKEND_PID" "$HAPROXY_PID" ;;
                hyper-floor) run_wrk "$layout" "$round" hyper-floor "$FLOOR_PORT" "$BACKEND_PID" "$FLOOR_PID" ;;
                hyper-floor-spec)
                    run_wrk "$layout" "$round" hyper-floor-spec "$FLOOR_SPEC_PORT" "$BACKEND_PID" "$FLOOR_SPEC_PID"
                    ;;
                hyper-floor-session)
                    run_wrk "$layout" "$round" hyper-floor-session "$FLOOR_SESSION_PORT" "$BACKEND_PID" \
                        "$FLOOR_SESSION_PID" ${CPU_REDIS_PID:+"$CPU_REDIS_PID"}
                    ;;
                hyper-floor-session-spec)
                    WRK_HEADER="Cookie: sid=$BENCH_SESSION"
                    run_wrk "$layout" "$round" hyper-floor-session-spec "$FLOOR_SESSION_SPEC_PORT" "$BACKEND_PID" \
                        "$FLOOR_SESSION_SPEC_PID" ${CPU_REDIS_PID:+"$CPU_REDIS_PID"}
                    WRK_HEADER=''
                    ;;
                haproxy-rs256)
                    WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-rs256.txt")"
                    run_wrk "$layout" "$round" haproxy-rs256 "$HAPROXY_JWT_PORT" "$BACKEND_PID" "$HAPROXY_PID"
                    WRK_HEADER=''
                    ;;
                wristband*)
                    local_pid=$WB_PID port=$WB_PORT WRK_PATH=/ WRK_HEADER=''
                    case $target in
                        wristband-rs256) WRK_PATH=/api WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-rs256.txt")" ;;
                        wristband-rs256-nocache)
                            local_pid=$WBN_PID port=$WBN_PORT WRK_PATH=/api
                            WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-rs256.txt")"
                            ;;
                        wristband-es256-nocache)
                            local_pid=$WBN_PID port=$WBN_PORT WRK_PATH=/api
                            WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-es256.txt")"
                            ;;
                        # The public route, sent the RS256 target's header: what
                        # carrying the token costs, without verifying it.
                        wristband-public-bearer) WRK_HEADER="Authorization: Bearer $(cat "$KEYS/token-rs256.txt")" ;;
                        wristband-session) WRK_PATH=/app WRK_HEADER="Cookie: sid=$BENCH_SESSION" ;;
                        wristband-session-nocache)
                            local_pid=$WBN_PID port=$WBN_PORT WRK_PATH=/app
                            WRK_HEADER="Cookie: sid=$BENCH_SESSION"
                            ;;
                    esac
                    [ -n "$local_pid" ] || continue
                    kill -0 "$local_pid" 2>/dev/null || die "wristband died during the run: $(tail -n 5 "$TMP"/wristband-"$layout"-*.log)"
                    run_wrk "$layout" "$round" "$target" "$port" "$BACKEND_PID" "$local_pid" ${CPU_REDIS_PID:+"$CPU_REDIS_PID"}
                    WRK_PATH='' WRK_HEADER=''
                    ;;
            esac
        done
    done

    stop_pids "${layout_pids[@]}"
    REDIS_PORT='' REDIS_PID='' CPU_REDIS_PID=
done

# --- report ------------------------------------------------------------------------------
commit=$(git -C "$REPO_DIR" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] &&
    [ -n "$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    commit="$commit (+ uncommitted changes in src/Cargo)"
fi
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
wb_version=$("$WRISTBAND_BIN" --version 2>/dev/null || echo "n/a")

export CLK_TCK TARGETS DURATION WARMUP CONNECTIONS THREADS ROUNDS SERVER_CPUS LOAD_CPUS SWEEP CONNECTIONS_LIST
tables=$(python3 - "$RAW" "$NOTES" "$IDLE_RAW" <<'PY'
import os, statistics, sys

raw, notes, idle_raw = sys.argv[1], sys.argv[2], sys.argv[3]
sweep = os.environ.get("SWEEP", "")
tck = int(os.environ["CLK_TCK"])
order = os.environ["TARGETS"].split()
rows = {}
for line in open(raw):
    layout, rnd, target, rps, p50, p99, reqs, ticks, errs, cmds = line.rstrip("\n").split("\t")
    rows.setdefault(layout, {}).setdefault(target, []).append(dict(
        rps=float(rps), p50=float(p50), p99=float(p99), reqs=int(reqs),
        us=int(ticks) / tck * 1e6 / max(int(reqs), 1), errs=int(errs),
        # minus the one INFO call that reads the counter afterwards
        cmds=max(int(cmds) - 1, 0) / max(int(reqs), 1)))
notes = [n.strip() for n in open(notes) if n.strip()]

def med(xs):
    return statistics.median(xs)

c, t = os.environ["CONNECTIONS"], os.environ["THREADS"]
out = []
idle_rows = [l.rstrip("\n").split("\t") for l in open(idle_raw) if l.strip()]
for layout in ("pinned", "redis-apart", "unpinned"):
    if (layout not in rows and not any(n.startswith(layout + ":") for n in notes)
            and not any(r[0] == layout for r in idle_rows)):
        continue
    if layout == "pinned":
        how = (f"servers on CPU {os.environ['SERVER_CPUS']}, wrk on CPU {os.environ['LOAD_CPUS']}, "
               "wristband with TOKIO_WORKER_THREADS=" + (os.environ.get("WRISTBAND_WORKERS") or "1"))
    elif layout == "redis-apart":
        how = (f"servers on CPU {os.environ['SERVER_CPUS']}, wrk and Redis on CPU {os.environ['LOAD_CPUS']} "
               "(Redis's CPU not counted in server CPU), "
               "wristband with TOKIO_WORKER_THREADS=" + (os.environ.get("WRISTBAND_WORKERS") or "1"))
    else:
        how = "no CPU pinning, wristband with the default worker threads"
    out.append(f"### {layout}: {how}")
    out.append("")
    warm = os.environ["WARMUP"]
    warm = "no warm-up" if warm in ("0", "0s") else f"after a {warm} warm-up"
    if sweep == "connections":
        c = "N"
    if sweep != "idle":
        out.append(f"wrk -t{t} -c{c} -d{os.environ['DURATION']} --latency ({warm}); "
                   f"median of {os.environ['ROUNDS']} interleaved round(s)")
        out.append("")
    data = rows.get(layout, {})
    agg = {k: dict(rps=med([r["rps"] for r in v]), p50=med([r["p50"] for r in v]),
                   p99=med([r["p99"] for r in v]), us=med([r["us"] for r in v]),
                   errs=sum(r["errs"] for r in v), rounds=[r["rps"] for r in v],
                   cmds=med([r["cmds"] for r in v]))
           for k, v in data.items()}
    if sweep == "connections":
        out.append("| connections | nginx req/s | nginx p99 ms | nginx server µs/req | wristband req/s | wristband p99 ms | wristband server µs/req | wristband ÷ nginx req/s | wristband req/s by round | errors |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for n in os.environ["CONNECTIONS_LIST"].split():
            a, b = agg.get(f"nginx@{n}"), agg.get(f"wristband@{n}")
            if not a or not b:
                out.append(f"| {n} | n/a | | | | | | | | |")
                continue
            out.append(f"| {n} | {a['rps']:.0f} | {a['p99']:.2f} | {a['us']:.1f} | {b['rps']:.0f} | {b['p99']:.2f} | {b['us']:.1f} "
                       f"| {b['rps'] / a['rps']:.2f} | {' / '.join(f'{x:.0f}' for x in b['rounds'])} | {a['errs'] + b['errs']} |")
        out.append("")
        continue
    if sweep in ("routes", "jwks", "forward-auth", "runtimes"):
        names = [k for k in dict.fromkeys(l.split("\t")[2] for l in open(raw)) if k in agg]
        out.append("| target | req/s | req/s by round | p50 ms | p99 ms | vs first row req/s | server CPU µs/req | Δ µs/req vs first row | errors |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        base = agg[names[0]] if names else None
        for k in names:
            a = agg[k]
            out.append(f"| {k} | {a['rps']:.0f} | {' / '.join(f'{x:.0f}' for x in a['rounds'])} | {a['p50']:.2f} | {a['p99']:.2f} "
                       f"| {a['rps'] / base['rps']:.3f} | {a['us']:.1f} | {a['us'] - base['us']:+.1f} | {a['errs']} |")
        out.append("")
        if sweep == "forward-auth":
            for a, b, what in (("nginx-auth-request-separate", "nginx-auth-request-trivial",
                                "nginx auth_request to the trivial auth service in a process of its own ÷ in the backend's"),
                               ("hyper-floor-auth", "nginx-auth-request-trivial",
                                "nginx auth_request to the bare hyper auth service (the stack's floor) ÷ to a trivial auth service"),
                               ("wristband-forward-auth", "nginx-auth-request-trivial",
                                "nginx auth_request to wristband ÷ to a trivial auth service"),
                               ("wristband-forward-auth", "hyper-floor-auth",
                                "nginx auth_request to wristband ÷ to the bare hyper auth service"),
                               ("hyper-floor-auth", "nginx-auth-request-separate",
                                "nginx auth_request to the bare hyper auth service ÷ to the separate trivial one"),
                               ("wristband-rs256-revocation-1000", "wristband-rs256",
                                "RS256 route, [revocation] on with 1,000 jtis ÷ off")):
                if a in agg and b in agg:
                    out.append(f"- {what}: {agg[a]['rps'] / agg[b]['rps']:.3f} (req/s)")
            out.append("")
        if sweep == "runtimes":
            for a, b, what in (("wristband-2-per-thread", "nginx-2-workers", "wristband, 2 threads with a runtime each ÷ nginx, 2 workers"),
                               ("wristband-2-shared", "nginx-2-workers", "wristband, 2 work-stealing threads ÷ nginx, 2 workers"),
                               ("wristband-2-per-thread", "wristband-2-shared", "runtime per thread ÷ work stealing, 2 threads"),
                               ("wristband-2-per-thread", "wristband-1-shared", "2 threads (runtime each) ÷ 1 thread"),
                               ("wristband-2-shared", "wristband-1-shared", "2 threads (work stealing) ÷ 1 thread")):
                if a in agg and b in agg:
                    out.append(f"- {what}: {agg[a]['rps'] / agg[b]['rps']:.3f} (req/s)")
            out.append("")
        continue
    if sweep == "idle":
        out.append("| server | idle keep-alive connections asked / opened / still open | failed | RSS before, MB | RSS with them open, MB | KB per connection | RSS after closing, MB | server fds | seconds to open |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in idle_rows:
            if r[0] != layout:
                continue
            _, name, asked, opened, still, failed, before, during, after, fds, took = r
            per = (int(during) - int(before)) / max(int(opened), 1)
            out.append(f"| {name} | {asked} / {opened} / {still} | {failed} | {int(before) / 1024:.1f} | {int(during) / 1024:.1f} "
                       f"| {per:.1f} | {int(after) / 1024:.1f} | {fds} | {took} |")
        out.append("")
        continue
    out.append("| target | req/s | req/s by round | p50 ms | p99 ms | vs nginx req/s | vs wristband public | vs HAProxy RS256 | server CPU µs/req | proxy's own µs/req | Redis cmds/req | errors |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target in order:
        a = agg.get(target)
        if a is None:
            out.append(f"| {target} | n/a | | | | | | | | | | |")
            continue
        jwt_row = target == "haproxy-rs256" or (target.startswith("wristband-") and "256" in target)
        vs_hap = (f"{a['rps'] / agg['haproxy-rs256']['rps']:.2f}"
                  if jwt_row and "haproxy-rs256" in agg else "—")
        ratio = f"{a['rps'] / agg['nginx']['rps']:.2f}" if "nginx" in agg else "n/a"
        vs_public = (f"{a['rps'] / agg['wristband']['rps']:.2f}"
                     if target.startswith("wristband") and "wristband" in agg else "—")
        own = f"{a['us'] - agg['direct']['us']:.1f}" if target != "direct" and "direct" in agg else "—"
        by_round = " / ".join(f"{x:.0f}" for x in a["rounds"])
        out.append(f"| {target} | {a['rps']:.0f} | {by_round} | {a['p50']:.2f} | {a['p99']:.2f} | {ratio} | {vs_public} | {vs_hap} "
                   f"| {a['us']:.1f} | {own} | {a['cmds']:.2f} | {a['errs']} |")
    for n in notes:
        if n.startswith(layout + ":"):
            out.append("")
            out.append(f"Note: {n}")
    out.append("")
print("\n".join(out).rstrip())
PY
)

printf '%s\n' "$tables"

mkdir -p "$(dirname "$RESULTS")"
{
    echo "# wristband benchmark: latest results${SWEEP:+ (SWEEP=$SWEEP)}"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $NPROC CPUs, ${cpu_model:-unknown CPU}; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    if command -v haproxy >/dev/null 2>&1; then echo "- haproxy: $(haproxy -v 2>&1 | head -n 1 | awk '{print $3}')"; fi
    echo "- wristband: $wb_version, commit $commit"
    echo "- command: ${SWEEP:+SWEEP=$SWEEP }DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS LAYOUT=$LAYOUT bench/run.sh"
    echo
    echo "Absolute numbers depend on the machine and on whatever else runs on it;"
    echo "compare the ratios within one run. See bench/README.md."
    echo
    printf '%s\n' "$tables"
} >"$RESULTS"
log "wrote $RESULTS"
