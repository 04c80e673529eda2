# Set-up and the two jobs of the README. Everything installs into a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick

.PHONY: setup notebooks test benchmark clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Main job: re-run every notebook headlessly on a profile (default quick), writing figures/<profile>/.
notebooks: setup
	$(PY) -m thesis_lib notebooks --profile $(PROFILE)

# Tests: unit tests of every module and a smoke-profile run of every notebook. The smoke nets are tiny:
# one intra-op thread per process is faster than several.
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

benchmark: setup
	$(PY) benchmarks/epoch_time.py

clean-results:
	rm -rf results/$(PROFILE) figures/$(PROFILE)
