# Fresh machine: `make run` serves on SQLite, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run migrate test lint bench demo simulate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## the .venv with the service and the test extras

migrate: $(STAMP)
	$(BIN)/visma-hooks migrate

run: migrate  ## serve on 127.0.0.1:8000 with the embedded SQLite default
	$(BIN)/visma-hooks serve --host $(HOST) --port $(PORT)

simulate: $(STAMP)  ## the Visma.net simulator on 127.0.0.1:8090
	$(BIN)/visma-hooks simulate --port 8090

test: $(STAMP)  ## lint, type-check, check the import rules and run the tests (TEST_DATABASE_URL picks the database)
	$(BIN)/ruff check service tests
	$(BIN)/mypy --strict service
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q --cov --cov-report=term:skip-covered --cov-fail-under=85

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service
	$(BIN)/mypy --strict service
	$(BIN)/lint-imports --no-cache

# BENCH_DATABASE_URL: the PostgreSQL database to (re)create; its name must contain "bench".
BENCH_DATABASE_URL ?= postgresql://root@127.0.0.1:5432/bench
BENCH_ARGS ?=

bench: $(STAMP)  ## ingest throughput vs the bare endpoint, then 1M-job query timings (docs/benchmarks.md)
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing wrk (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || { \
		command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters --no-header | \
		while read -r version cluster _; do \
			pg_ctlcluster --skip-systemctl-redirect "$$version" "$$cluster" start || true; \
		done; sleep 2; }
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m tests.bench.run $(BENCH_ARGS)

demo: $(STAMP)  ## rehearse Visma's outcomes and failure modes against the simulator
	$(BIN)/visma-hooks demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
