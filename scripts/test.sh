#!/usr/bin/env bash
# The whole test command: lint, types, then the suite on SQLite (outbox bus) and on
# PostgreSQL with Redis Streams (services started here when they are not running). The two
# database runs are independent (their own data directories, databases and bus prefixes), so
# they run side by side, one per core; each one's output is shown when both have finished.
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

echo "== pytest on SQLite with the outbox bus, and on PostgreSQL with Redis Streams (in parallel)"
# (bash starts these background jobs with SIGINT ignored, and the processes the tests start
# inherit that: commands the tests interrupt with SIGINT install their own handler.)
started=$(date +%s)
env -u DATABASE_URL BUS_URL=outbox BROKERDESK_DATA_DIR="$work/sqlite" \
  pytest -p no:cacheprovider "$@" >"$work/sqlite.log" 2>&1 &
sqlite_pid=$!
env DATABASE_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/brokerdesk}" \
  BUS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" BROKERDESK_DATA_DIR="$work/pg" \
  pytest -p no:cacheprovider "$@" >"$work/pg.log" 2>&1 &
pg_pid=$!

sqlite_status=0
pg_status=0
wait "$sqlite_pid" || sqlite_status=$?
wait "$pg_pid" || pg_status=$?

echo "== pytest on SQLite with the outbox bus"
cat "$work/sqlite.log"
echo "== pytest on PostgreSQL with Redis Streams"
cat "$work/pg.log"
verdict() { if [ "$1" = 0 ]; then echo passed; else echo "FAILED ($1)"; fi; }
echo "== both runs took $(( $(date +%s) - started )) s: SQLite $(verdict "$sqlite_status"), PostgreSQL $(verdict "$pg_status")"
[ "$sqlite_status" = 0 ] && [ "$pg_status" = 0 ]
