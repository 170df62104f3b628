# Everything starts from plain Python 3.11+ and make: the first target that needs it creates .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-slow lint bench bench-quick bench-end-day bench-deletes bench-scale-out torture fuzz clean

# setuptools warns, on an editable install, that a folder named like the package may shadow it: here the folder
# zonesync/ is the package (links to flows/, tasks/, schemas/, deployments/), so that warning alone is silenced.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install zonesync with its dev tools

demo: $(STAMP)  ## run the demo on the embedded SQLite default
	$(BIN)/zonesync demo

# Two lanes (docs/testing.md): the fast lane for the everyday loop, the slow lane for what needs whole servers,
# private clusters or long generated runs. `make test` runs both, as CI does, and names the 25 slowest tests.
PYTEST := $(BIN)/python -m pytest --durations=25

test: $(STAMP)  ## both lanes (PostgreSQL/MariaDB too when ZONESYNC_TEST_*_URL are set)
	$(PYTEST)

test-fast: $(STAMP)  ## the fast lane: everything but the slow lane (under 10 minutes)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)  ## the slow lane: torture, fuzz and properties, Prefect servers and workers, packaging, clusters
	$(PYTEST) -m slow

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p zonesync.flows -p zonesync.tasks -p zonesync.schemas -p zonesync.deployments
	$(BIN)/mypy bench  # the benchmarks run rarely: type errors would otherwise wait for the next measurement

bench: $(STAMP)  ## 1M-row PostgreSQL benchmark against the pure-database floor
	$(BIN)/python -m bench.retry_sync

bench-quick: $(STAMP)  ## the same on 100k rows, one repetition
	$(BIN)/python -m bench.retry_sync --quick

bench-end-day: $(STAMP)  ## the end-day check (`zonesync end-day`) of 1M eligible payments on PostgreSQL
	$(BIN)/python -m bench.end_day

bench-deletes: $(STAMP)  ## carrying 1M deletes (tombstones) per policy against carrying the same rows, on PostgreSQL
	$(BIN)/python -m bench.deletes

bench-scale-out: $(STAMP)  ## 1, 2, 4 and 8 workers sharing one partitioned 1M-row mapping on PostgreSQL, and a takeover
	$(BIN)/python -m bench.scale_out

# The long torture run (tests/torture): drill by pairing table; needs ZONESYNC_TEST_POSTGRES_URL / _MARIADB_URL.
TORTURE_ARGS ?= --trials 50 --sqlite-trials 20

torture: $(STAMP)  ## crash, stall, concurrency and outage drills against real processes and databases
	$(BIN)/python -m tests.torture $(TORTURE_ARGS)

# The long hostile-input run: >= 100,000 generated HTTP cases (PostgreSQL and MariaDB) and >= 10,000 generated
# rows per backend pairing, through the same tests as the bounded run in `make test`.
FUZZ_EXAMPLES ?= 5200
PROPERTY_EXAMPLES ?= 40
PROPERTY_ROWS ?= 250
PROPERTY_MIN_ROWS ?= 100

fuzz: $(STAMP)  ## long HTTP fuzzing and property runs (hostile input); prints the counts
	ZONESYNC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider -q -s --timeout 0 \
		-k "not sqlite" tests/integration/test_http_fuzz.py
	ZONESYNC_PROPERTY_EXAMPLES=$(PROPERTY_EXAMPLES) ZONESYNC_PROPERTY_ROWS=$(PROPERTY_ROWS) \
		ZONESYNC_PROPERTY_MIN_ROWS=$(PROPERTY_MIN_ROWS) \
		$(BIN)/python -m pytest -p no:cacheprovider -q -s --timeout 0 tests/integration/test_properties.py

clean:
	rm -rf $(VENV) .zonesync .pytest_cache .ruff_cache .mypy_cache
