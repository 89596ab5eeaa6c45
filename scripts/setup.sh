#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine with Python 3.11: system Chromium, a virtual
# environment with census and its test tools. Sourced by ./demo and ./test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium (Playwright cannot download browsers here)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "==> creating $ROOT/.venv"
  "$PYTHON" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.census-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "==> installing census and its test tools into .venv"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
