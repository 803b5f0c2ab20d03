# Two commands: `make smoke` (MAPO training through verl's trainer on a CPU) and `make test` (set-up + the whole
# CPU suite; `make test-fast` is the fast tier). docs/development.md lists the tiers.
# The venv gets the CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mapo-verl-installed
TORCH_CPU    ?= torch==2.13.0
VERL_PIN     ?= verl[verl-core]==0.9.1
export RAY_AUTH_MODE ?= disabled

.PHONY: venv test test-fast lint explain doctor bench smoke clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e '.[test]' '$(VERL_PIN)'
	@touch $@

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

# The inner loop: pure math, rewards and data on fixtures (no Ray, no fresh verl interpreters, no trainer).
test-fast: venv
	$(PY) -m pytest -m "not slow and not ray and not e2e"

explain: venv
	$(PY) -m mapo_verl explain 0.9 1 1 1

doctor: venv
	$(PY) -m mapo_verl doctor

bench: venv
	$(PY) benchmarks/bench_advantage.py

# verl's real trainer (main_ppo) runs MAPO for 2 steps on CPU with a tiny Qwen2.5-VL (docs/cpu-smoke.md).
smoke: venv
	$(PY) -m mapo_verl smoke

clean:
	rm -rf $(VENV) build *.egg-info
