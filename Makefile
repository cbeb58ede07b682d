# Fresh machine: `make run` sets up and runs the demo; `make test` sets up and runs all tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/coordinator check .
	$(BIN)/coordinator demo

serve: $(STAMP)
	$(BIN)/coordinator check .
	$(BIN)/coordinator serve

check: $(STAMP)
	$(BIN)/coordinator check .

test: $(STAMP)
	scripts/ensure-test-services
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache coordinator.db coordinator.db-wal coordinator.db-shm
