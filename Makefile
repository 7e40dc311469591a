# The two contracts of the README: `make demo` and `make test` each create .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
DEMO_DIR ?= runs/demo

.PHONY: venv demo test test-fast lint format bench clean studio

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m spt_tf.demo --workdir $(DEMO_DIR)

# The studio (docs/studio.md) on the demo's export and data; STUDIO_ARGS adds flags (e.g. --port 0).
studio: $(STAMP)
	@test -d $(DEMO_DIR)/export || { echo "$(DEMO_DIR)/export is missing: run 'make demo' first (it trains and exports the demo model)"; exit 1; }
	$(PY) -m spt_tf.studio --saved_model $(DEMO_DIR)/export --data_dir $(DEMO_DIR)/data $(if $(wildcard $(DEMO_DIR)/train/parser/checkpoint),--parser_workdir $(DEMO_DIR)/train) $(STUDIO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist load tests

PY_SOURCES := spt_tf tests bench serving configs train.py export.py evaluate.py

lint: $(STAMP)
	$(PY) -m ruff check $(PY_SOURCES)
	$(PY) -m ruff format --check $(PY_SOURCES)

format: $(STAMP)
	$(PY) -m ruff format $(PY_SOURCES)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
