#!/usr/bin/env bash
# The test suite with what it needs on a fresh machine: Chromium and CJK fonts, in which
# cli/tests/it/report.rs renders the HTML report (installed with apt-get when missing; that
# needs root), then `cargo test --workspace`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium and fonts-noto-cjk (the HTML report test renders in it)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-noto-cjk >/dev/null
  else
    echo "scripts/test.sh: Chromium is needed (cli/tests/it/report.rs renders the HTML report);" >&2
    echo "install it, e.g. 'sudo apt-get install chromium fonts-noto-cjk', and run again" >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"
