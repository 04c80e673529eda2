# Set-up and the two jobs of the README. Everything installs into a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
JOBS ?= 1

.PHONY: setup data latex notebooks plan test format benchmark clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Fashion-MNIST for chapter 8: Debian's dataset-fashion-mnist where apt works as root (CI), else
# torchvision's download into THESIS_DATA (default ~/.cache/thesis_lib); nothing to do when it is there.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
data: setup
	@if [ -d $(FASHION_MNIST) ] || $(PY) -c "from thesis_lib.data import load_dataset; load_dataset('fashion_mnist')" 2>/dev/null; then \
		echo "Fashion-MNIST found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); \
	else \
		$(PY) -c "from thesis_lib.data import load_dataset; load_dataset('fashion_mnist', download=True)"; \
	fi

# pdflatex for the test that compiles every table and macro of the smoke re-run (issue 28): Debian's
# texlive-latex-base and -recommended (booktabs) where apt works as root (CI, about a minute); elsewhere
# that test skips and says what to install.
latex:
	@if command -v pdflatex >/dev/null; then \
		echo "pdflatex found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q --no-install-recommends texlive-latex-base texlive-latex-recommended \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends texlive-latex-base texlive-latex-recommended); \
	else \
		echo "pdflatex missing: the LaTeX compile test will skip (apt-get install texlive-latex-base texlive-latex-recommended)"; \
	fi

# Main job: re-run every notebook headlessly on a profile (default quick), writing figures/<profile>/.
# One notebook at a time (JOBS=1): the runs whose seconds the chapters compare train alone. JOBS=2 halves
# the wall time on two cores; every run's provenance then counts its neighbours and time tests say
# "not comparable".
notebooks: data
	$(PY) -m thesis_lib notebooks --profile $(PROFILE) --jobs $(JOBS)

# Before a long re-run: every run the notebooks would train on the profile, cached or not, and the
# estimated training time on this machine (a short calibration, cached in results/<profile>/).
plan: setup
	$(PY) -m thesis_lib plan --profile $(PROFILE)

# Tests: the linter and the formatter's check (ruff, configured in pyproject.toml; `make format` applies
# both), then unit tests of every module and a smoke-profile run of every notebook. The smoke nets are
# tiny: one intra-op thread per process is faster than several.
test: data latex
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

benchmark: setup
	$(PY) benchmarks/epoch_time.py

clean-results:
	rm -rf results/$(PROFILE) figures/$(PROFILE)
