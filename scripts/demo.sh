#!/usr/bin/env bash
# Run the product on the embedded default (SQLite, outbox bus, local documents) with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/brokerdesk demo "$@"
