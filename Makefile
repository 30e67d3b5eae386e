# amishare — the commands a newcomer needs: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test lint typecheck pytest openapi sandbox bench clean postgres

$(BIN)/amishare: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/amishare ## Create .venv and install the service with its dev tools

run: install ## Install and serve the API on SQLite (./amishare.db), embedded worker included
	$(BIN)/amishare serve --host $(HOST) --port $(PORT)

sandbox: install ## Try it safely: the service on a local AWS double with demo AMIs (Ctrl-C stops)
	$(BIN)/amishare sandbox --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy --strict app

postgres: ## Start the local PostgreSQL the tests use, if it is down
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

pytest: install postgres
	$(BIN)/pytest -q

test: lint typecheck pytest ## Install, lint, type-check and run every test (SQLite and PostgreSQL)

openapi: install ## Regenerate the committed OpenAPI spec
	$(BIN)/python scripts/export_openapi.py

bench: install ## Fan-out, polling, intake, memory and event-loop benchmarks (prints tables; minutes)
	$(BIN)/python -m bench.fanout --latency-ms $(or $(LATENCY_MS),50)
	$(BIN)/python -m bench.service_load
	$(BIN)/python -m bench.loop_stall

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache amishare.db*
