#!/usr/bin/env bash
# bench/run.sh: load-test wristband against nginx with wrk. See bench/README.md.
#
#   bench/run.sh                                  # defaults: pinned, 10s x 2 rounds
#   DURATION=3s ROUNDS=1 LAYOUT=both bench/run.sh
#
# Targets, interleaved A B C A B C ... for ROUNDS rounds:
#   direct                   wrk -> nginx backend (return 200 "ok")
#   nginx                    wrk -> nginx reverse proxy (upstream keep-alive) -> backend
#   wristband                wrk -> wristband, public route -> backend
#   wristband-rs256          wristband, JWT route, RS256 token, verified-token cache on
#   wristband-rs256-nocache  the same with the cache off (every request verifies)
#   wristband-es256-nocache  an ES256 token, cache off
#   wristband-session        session route, Redis on loopback, session cache on (tracking)
#   wristband-session-nocache  the same with cache_ttl = "0s": one Redis lookup per request
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
TARGETS=${TARGETS:-direct nginx wristband wristband-rs256 wristband-rs256-nocache wristband-es256-nocache wristband-session wristband-session-nocache}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
BUILD=${BUILD:-auto}
RESULTS=${RESULTS:-$BENCH_DIR/results/latest.md}
READY_TIMEOUT=${READY_TIMEOUT:-30}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

case $LAYOUT in
    pinned) LAYOUTS=(pinned) ;;
    unpinned) LAYOUTS=(unpinned) ;;
    both) LAYOUTS=(pinned unpinned) ;;
    *) die "LAYOUT must be pinned, unpinned or both (got '$LAYOUT')" ;;
esac
case $BUILD in auto | always | never) ;; *) die "BUILD must be auto, always or never (got '$BUILD')" ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
for t in $TARGETS; do
    case $t in
        direct | nginx | wristband | wristband-rs256 | wristband-rs256-nocache | wristband-es256-nocache) ;;
        wristband-session | wristband-session-nocache) ;;
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
# Any wristband target needs the binary (and the JWT ones the bench tokens).
WANT_WB=no
[[ " $TARGETS " == *" wristband"* ]] && WANT_WB=yes
TOKENS_BIN=$TARGET_DIR/release/examples/bench_tokens
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

http_status() {
    python3 - "$1" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=1).status)
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
wait_ready() {
    local url=$1 pid=$2 name=$3 deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited before it was ready"; return 1; }
        [ "$(http_status "$url")" = 200 ] && return 0
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

# --- the run -------------------------------------------------------------------------
RAW=$TMP/raw.tsv
: >"$RAW"
NOTES=$TMP/notes.txt
: >"$NOTES"
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

for layout in "${LAYOUTS[@]}"; do
    if [ "$layout" = pinned ]; then
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

    read -r BACKEND_PORT NGINX_PORT WB_PORT WB_ADMIN_PORT <<<"$(free_ports 4)"
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

    # Two wristband processes: the verified-token cache on (WB) and off (WBN).
    WB_PID=
    WBN_PID=
    if [ $WANT_WB = yes ]; then
        KEYS=$TMP/keys
        mkdir -p "$KEYS"
        "$TOKENS_BIN" "$KEYS" || die "bench_tokens failed"
        read -r WBN_PORT WBN_ADMIN_PORT <<<"$(free_ports 2)"
        # Sessions live in a Redis of the bench's own, pinned with the servers.
        REDIS_PORT=$(free_ports 1)
        "${PIN_SERVER[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
            --appendonly no --dir "$TMP" --daemonize no >"$TMP/redis-$layout.log" 2>&1 &
        REDIS_PID=$!
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

    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $TARGETS; do
            case $target in
                direct) run_wrk "$layout" "$round" direct "$BACKEND_PORT" "$BACKEND_PID" ;;
                nginx) run_wrk "$layout" "$round" nginx "$NGINX_PORT" "$BACKEND_PID" "$NGINX_PID" ;;
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
                        wristband-session) WRK_PATH=/app WRK_HEADER="Cookie: sid=$BENCH_SESSION" ;;
                        wristband-session-nocache)
                            local_pid=$WBN_PID port=$WBN_PORT WRK_PATH=/app
                            WRK_HEADER="Cookie: sid=$BENCH_SESSION"
                            ;;
                    esac
                    [ -n "$local_pid" ] || continue
                    kill -0 "$local_pid" 2>/dev/null || die "wristband died during the run: $(tail -n 5 "$TMP"/wristband-"$layout"-*.log)"
                    run_wrk "$layout" "$round" "$target" "$port" "$BACKEND_PID" "$local_pid" ${REDIS_PID:+"$REDIS_PID"}
                    WRK_PATH='' WRK_HEADER=''
                    ;;
            esac
        done
    done

    stop_pids "${layout_pids[@]}"
    REDIS_PORT='' REDIS_PID=
done

# --- report ------------------------------------------------------------------------------
commit=$(git -C "$REPO_DIR" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] &&
    [ -n "$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    commit="$commit (+ uncommitted changes in src/Cargo)"
fi
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
wb_version=$("$WRISTBAND_BIN" --version 2>/dev/null || echo "n/a")

export CLK_TCK TARGETS DURATION WARMUP CONNECTIONS THREADS ROUNDS SERVER_CPUS LOAD_CPUS
tables=$(python3 - "$RAW" "$NOTES" <<'PY'
import os, statistics, sys

raw, notes = sys.argv[1], sys.argv[2]
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
for layout in ("pinned", "unpinned"):
    if layout not in rows and not any(n.startswith(layout + ":") for n in notes):
        continue
    if layout == "pinned":
        how = (f"servers on CPU {os.environ['SERVER_CPUS']}, wrk on CPU {os.environ['LOAD_CPUS']}, "
               "wristband with TOKIO_WORKER_THREADS=" + (os.environ.get("WRISTBAND_WORKERS") or "1"))
    else:
        how = "no CPU pinning, wristband with the default worker threads"
    out.append(f"### {layout}: {how}")
    out.append("")
    warm = os.environ["WARMUP"]
    warm = "no warm-up" if warm in ("0", "0s") else f"after a {warm} warm-up"
    out.append(f"wrk -t{t} -c{c} -d{os.environ['DURATION']} --latency ({warm}); "
               f"median of {os.environ['ROUNDS']} interleaved round(s)")
    out.append("")
    out.append("| target | req/s | req/s by round | p50 ms | p99 ms | vs nginx req/s | vs wristband public | server CPU µs/req | proxy's own µs/req | Redis cmds/req | errors |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    data = rows.get(layout, {})
    agg = {k: dict(rps=med([r["rps"] for r in v]), p50=med([r["p50"] for r in v]),
                   p99=med([r["p99"] for r in v]), us=med([r["us"] for r in v]),
                   errs=sum(r["errs"] for r in v), rounds=[r["rps"] for r in v],
                   cmds=med([r["cmds"] for r in v]))
           for k, v in data.items()}
    for target in order:
        a = agg.get(target)
        if a is None:
            out.append(f"| {target} | n/a | | | | | | | | | |")
            continue
        ratio = f"{a['rps'] / agg['nginx']['rps']:.2f}" if "nginx" in agg else "n/a"
        vs_public = (f"{a['rps'] / agg['wristband']['rps']:.2f}"
                     if target.startswith("wristband") and "wristband" in agg else "—")
        own = f"{a['us'] - agg['direct']['us']:.1f}" if target != "direct" and "direct" in agg else "—"
        by_round = " / ".join(f"{x:.0f}" for x in a["rounds"])
        out.append(f"| {target} | {a['rps']:.0f} | {by_round} | {a['p50']:.2f} | {a['p99']:.2f} | {ratio} | {vs_public} "
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
    echo "# wristband benchmark: latest results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $NPROC CPUs, ${cpu_model:-unknown CPU}; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "- wristband: $wb_version, commit $commit"
    echo "- command: DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS LAYOUT=$LAYOUT bench/run.sh"
    echo
    echo "Absolute numbers depend on the machine and on whatever else runs on it;"
    echo "compare the ratios within one run. See bench/README.md."
    echo
    printf '%s\n' "$tables"
} >"$RESULTS"
log "wrote $RESULTS"
