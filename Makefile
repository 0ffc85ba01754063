# Brokerdesk: `make demo` runs the product with demo data; `make test` runs every check.
.PHONY: demo test lint setup services bench

setup:
	scripts/setup.sh

demo:
	scripts/demo.sh $(ARGS)

test:
	scripts/test.sh

lint: setup
	.venv/bin/ruff check src tests && .venv/bin/mypy src

services:
	scripts/services.sh

bench: setup
	.venv/bin/brokerdesk bench ledger --json --seconds 10
