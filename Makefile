# Fresh machine: `make run` sets up and runs the demo; `make test` sets up and runs all tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test check clean wheelhouse

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

# Every wheel an offline install needs, the project's and its runtime dependencies' (uvloop
# too), with the project's .venv if there is one (else $(PYTHON), which needs pip): then
# pip install --no-index --find-links wheelhouse 'coordinator[fast]' (docs/ops/install.md).
WHEELHOUSE ?= wheelhouse
wheelhouse:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m pip wheel --quiet '.[fast]' -w $(WHEELHOUSE)

clean:
	rm -rf $(VENV) .pytest_cache coordinator.db coordinator.db-wal coordinator.db-shm
