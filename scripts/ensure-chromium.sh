#!/usr/bin/env bash
# The web-app tests drive Debian's Chromium. Install it when it is missing and we may
# (root with apt-get, as on a fresh development machine or in CI); otherwise say what to do.
set -euo pipefail
chromium_path="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$chromium_path" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  exit 0
fi
echo "The browser tests need Chromium at $chromium_path: install Debian's chromium package or set CHROMIUM_PATH." >&2
exit 1
