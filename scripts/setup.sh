#!/usr/bin/env bash
# Set up a fresh machine for Brokerdesk: a virtual environment with the project and its
# development tools. Safe to run again; it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.brokerdesk-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi

# Front-end packages (htmx) from the npm registry into node_modules/, served by Django's
# staticfiles; never committed. Reinstalls only when package.json or its lock file changed.
if command -v npm >/dev/null 2>&1 && [ -f package.json ]; then
  npm_stamp=node_modules/.brokerdesk-installed
  npm_want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; then
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund --loglevel=error
    else
      npm install --no-audit --no-fund --loglevel=error
    fi
    npm_want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
    echo "$npm_want" > "$npm_stamp"
  fi
else
  echo "npm not found: pages will load without htmx (install nodejs and npm, then re-run)" >&2
fi

# Translation catalogues: compile src/brokerdesk/locale/*/LC_MESSAGES/django.po to django.mo
# (with polib: no system gettext needed). The .mo files are build output, never committed.
.venv/bin/brokerdesk translations compile >/dev/null
