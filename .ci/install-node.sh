#!/usr/bin/env bash
# Node.js and the test OpenID Provider's packages (tests/oidc-provider), for
# the login tests. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

# oidc-provider 9 calls URL.parse (Node >= 20.18); Debian 12's nodejs is 18.
if ! node -e 'process.exit(typeof URL.parse === "function" ? 0 : 1)'; then
  echo "install-node.sh: Node $(node --version) is too old for oidc-provider 9 (needs >= 20.18)" >&2
  exit 1
fi

if [[ ! -d tests/oidc-provider/node_modules ]]; then
  npm ci --prefix tests/oidc-provider --no-audit --no-fund
fi
