# Two commands do all set-up on a fresh machine:
#   make train   - creates .venv on first use, gets Fashion-MNIST where it is missing (Debian's package), then trains
#                  NiN on it (BACKEND=torch|mxnet|tf|jax, ARGS=...): the chapter's recipe where nvidia-smi lists a
#                  GPU, else quick-nesterov, in bf16 where the CPU computes it natively (RECIPE=... overrides)
#   make test    - the same set-up, then the test suite over every backend (TEST_WORKERS=2 pytest processes: much of
#                  a test's time is one core starting processes and importing frameworks)
# ENV picks the environment (a virtual environment of its own, pinned by its constraints file):
#   ENV=four     (default) .venv: the four frameworks in one process; MXNet 1.9.1 holds numpy below 2 there
#   ENV=current  .venv-current: numpy 2 and the current releases of PyTorch, TensorFlow and JAX, without MXNet
PYTHON ?= python3
ENV ?= four
VENV_four := .venv
VENV_current := .venv-current
EXTRAS_four := all,test
EXTRAS_current := current,test
VENV ?= $(VENV_$(ENV))
EXTRAS ?= $(EXTRAS_$(ENV))
CONSTRAINTS ?= constraints$(if $(filter current,$(ENV)),-current).txt
BACKEND ?= torch
ARGS ?=
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
# a GPU (as nvidia-smi sees one) runs the chapter's recipe in minutes; a CPU needs hours for it, so it gets
# quick-nesterov, in bf16 where native (AVX512-BF16/AMX), else fp32 (nin_common/engine/recipes.py decides).  Both
# are read with the environment's Python once it is installed ("=": when train runs).
HAVE_GPU := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo yes)
HAVE_BF16 = $(shell $(BIN)/python -c 'from nin_common.util.machine import cpu_bf16; print("yes" if cpu_bf16() else "")')
RECIPE ?= $(shell $(BIN)/python -c 'from nin_common.engine.recipes import for_this_machine; print(for_this_machine($(if $(HAVE_GPU),True,False)))')
NOTICE_quick-nesterov := the quick-nesterov recipe (67x67, kaiming-alive init, batch 64, 3 epochs, SGD with Nesterov momentum 0.9, lr 0.015 after a half-epoch warm-up, decaying to 0 along a cosine: about 0.90 in minutes on a CPU). RECIPE=chapter runs the chapter's (hours on a CPU)
NOTICE_quick := the quick recipe (67x67, kaiming-alive init, 10 epochs, lr 0.05 after a half-epoch warm-up, decaying to 0 along a cosine; minutes on a CPU). RECIPE=quick-nesterov runs the CPU's default
NOTICE_quick-b32 := the quick-b32 recipe (67x67, kaiming-alive init, batch 32, 4 epochs, lr 0.05 after a half-epoch warm-up, decaying to 0 along a cosine: the quick recipe in fewer images, for a CPU without bf16). RECIPE=quick-nesterov or RECIPE=chapter runs the others
NOTICE_chapter := the chapter's recipe (224x224, Xavier init, lr 0.05, 10 epochs)
comma := ,
# Fashion-MNIST: nothing to do where nin finds it (NIN_DATA_DIR, the cache, Debian's copy) or where ARGS names a
# --data-dir; else Debian's package dataset-fashion-mnist where apt-get can install it (the download that nin train
# tries otherwise needs the network); where neither works, nin train says in one line what it tried
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET ?= apt-get

.PHONY: train train-notice test data summary install clean

$(BIN)/nin: pyproject.toml setup.py nin_runtime.pth $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(BIN)/nin

install: $(BIN)/nin

data:
	@if [ -z "$(findstring --data-dir,$(ARGS))" ] && ! $(BIN)/python -c 'from nin_common.engine import data; data.locate(download_to_cache=False)' >/dev/null 2>&1; then \
	  if command -v $(APT_GET) >/dev/null 2>&1; then \
	    echo "make: Fashion-MNIST not found; installing Debian's package dataset-fashion-mnist ($(strip $(SUDO) $(APT_GET)) install)"; \
	    { $(SUDO) $(APT_GET) update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
	      || echo "make: $(APT_GET) could not install dataset-fashion-mnist; nin will try the download"; \
	  else echo "make: Fashion-MNIST not found and no $(APT_GET) here; nin will try the download"; fi; \
	fi

train-notice:
	@echo "make train: $(if $(HAVE_GPU),a GPU found,no GPU found (nvidia-smi lists none)$(comma) a CPU $(if $(HAVE_BF16),with,without) native bf16): $(BACKEND) trains with $(or $(NOTICE_$(RECIPE)),recipe $(RECIPE))"

train: install data train-notice
	$(BIN)/nin train --backend $(BACKEND) --recipe $(RECIPE) --out runs/$(BACKEND) $(ARGS)

test: install data
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

summary: install
	$(BIN)/nin summary --backend all $(ARGS)

clean:
	rm -rf $(VENV_four) $(VENV_current) build *.egg-info
