#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine with Python 3.11: Debian's chromium, a virtual
# environment with census and its test tools. Sourced by ./demo and ./test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

apt_install() {
  echo "==> installing Debian's $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# Playwright cannot download its own browsers here: census launches Debian's chromium.
[ -x /usr/bin/chromium ] || apt_install chromium
# libfaketime: the multi-host tests run one qcluster with its clock seconds off.
command -v faketime >/dev/null || apt_install faketime
# gettext's msgfmt: Django's compilemessages (the translation tests compile the catalog).
command -v msgfmt >/dev/null || apt_install gettext

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "==> creating $ROOT/.venv"
  # Debian's python3 has no ensurepip until python3-venv is installed.
  if ! "$PYTHON" -m venv "$ROOT/.venv" 2>/dev/null; then
    rm -rf "$ROOT/.venv"
    apt_install python3-venv
    "$PYTHON" -m venv "$ROOT/.venv"
  fi
fi
stamp="$ROOT/.venv/.census-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "==> installing census and its test tools into .venv"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "${ROOT}[test]"
  touch "$stamp"
fi
