# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtual environment (.venv) itself when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format bench mutants clean gpu-pack train-gpu

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/livecell-seg demo --out demo_output

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the pure core with mutmut (not in CI: ~30 min for the default sample of 40
# mutants per module on 2 cores; SAMPLE=0 runs all ~5,000). See CONTRIBUTING.md.
SAMPLE ?= 40
mutants: $(STAMP)
	$(BIN)/python -m pip install -q mutmut==3.8.1
	nice -n 10 $(BIN)/python benchmarks/mutation_score.py run --sample $(SAMPLE)
	$(BIN)/python benchmarks/mutation_score.py report --survivors

# The GPU recipe of the bundled model (issue 23). Here: build the data pack (needs ../shared);
# on a machine with one CUDA GPU and PyTorch + Lightning (no venv: its torch is the CPU wheel):
# train inside MINUTES of wall time -> runs/gpu/model. See docs/training.md, "Train on a GPU".
gpu-pack: $(STAMP)
	$(BIN)/python scripts/build_gpu_pack.py

GPU_PYTHON ?= python3
MINUTES ?= 9
train-gpu:
	$(GPU_PYTHON) scripts/train_gpu.py --minutes $(MINUTES)

clean:
	rm -rf demo_output .pytest_cache mutants
