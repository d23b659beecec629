#!/usr/bin/env bash
# Writes screenshots of the web application's main pages, at 1280 × 800
# and 390 × 844, into docs/screenshots/: the browser tests take them as
# they go (headless Chromium; see the README for what they need).
set -euo pipefail
cd "$(dirname "$0")/.."
ATRIUM_SCREENSHOTS="$PWD/docs/screenshots" cargo test -p atrium-http --test browser "$@"
