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

test: $(STAMP)  ## lint, type-check and run the tests (TEST_DATABASE_URL picks the database)
	$(BIN)/ruff check service tests
	$(BIN)/mypy --strict service
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service
	$(BIN)/mypy --strict service

bench: $(STAMP)
	@echo "the ingest benchmark is not built yet (issue: ingest throughput)"; exit 1

demo: $(STAMP)  ## rehearse Visma's outcomes and failure modes against the simulator
	$(BIN)/visma-hooks demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
