#!/usr/bin/env bash
# Installs the browser that the end-to-end tests drive over WebDriver
# (tests/common/browser.rs): Debian's chromium and its chromedriver, built
# from the same source version, so the driver always matches the browser.
# Idempotent: does nothing when both binaries are already there.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
dpkg-query -W chromium chromium-driver
