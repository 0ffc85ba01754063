#!/usr/bin/env bash
# The whole test command: lint, types, the suite on SQLite (outbox bus), then the suite on
# PostgreSQL with Redis Streams (services started here when they are not running).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

echo "== ruff"
ruff check src tests
echo "== mypy"
mypy src

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Redis and NATS adapter tests talk to real servers in both runs.
scripts/services.sh

echo "== pytest on SQLite with the outbox bus"
env -u DATABASE_URL BUS_URL=outbox BROKERDESK_DATA_DIR="$work/sqlite" \
  pytest -p no:cacheprovider "$@"

echo "== pytest on PostgreSQL with Redis Streams"
env DATABASE_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/brokerdesk}" \
  BUS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" BROKERDESK_DATA_DIR="$work/pg" \
  pytest -p no:cacheprovider "$@"
