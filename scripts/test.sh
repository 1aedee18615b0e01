#!/usr/bin/env bash
# Install LedgerGuard with its test extras into .venv and run the whole suite (3 workers).
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser test drives the Prefect UI in Debian's Chromium (Playwright with the system browser;
# nothing is downloaded by Playwright). Install it when it is missing and we may; otherwise that
# test skips and says why.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  packages="chromium fonts-wqy-zenhei"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages >/dev/null 2>&1; } \
    || echo "could not install $packages: the browser test will skip" >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Whole files per worker: module-scoped stacks are started once per file. Three workers on two
# cores: the served-stack tests spend most of their time waiting (escalation timers, quiet hours,
# runner polls), so a third worker overlaps them (measured here: 688 s against 761 s with two).
exec .venv/bin/python -m pytest -n 3 --dist loadfile -q "$@"
