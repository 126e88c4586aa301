# Two commands do all set-up on a fresh machine:
#   make train   - creates .venv on first use, then trains NiN on Fashion-MNIST (BACKEND=torch|mxnet|tf|jax, ARGS=...):
#                  the chapter's recipe where nvidia-smi lists a GPU, else the quick recipe where the CPU computes
#                  bf16 natively, else quick-b32 (RECIPE=... overrides)
#   make test    - creates .venv on first use, then runs the test suite over every backend (TEST_WORKERS=2
#                  pytest processes: much of a test's time is one core starting processes and importing frameworks)
PYTHON ?= python3
VENV ?= .venv
BACKEND ?= torch
ARGS ?=
TEST_WORKERS ?= 2
# a GPU (as nvidia-smi sees one) runs the chapter's recipe in minutes; a CPU needs hours for it, so it gets a quick
# one: quick where bf16 is native (AVX512-BF16/AMX), quick-b32 on an AVX2-only CPU (common/engine/recipes.py decides)
HAVE_GPU := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo yes)
HAVE_BF16 := $(shell $(PYTHON) -c 'from common.util.machine import cpu_bf16; print("yes" if cpu_bf16() else "")')
RECIPE ?= $(shell $(PYTHON) -c 'from common.engine.recipes import for_this_machine; print(for_this_machine($(if $(HAVE_GPU),True,False)))')
NOTICE_quick := the quick recipe (67x67, kaiming-alive init, 10 epochs, lr 0.05 after a half-epoch warm-up, decaying to 0 along a cosine; minutes on a CPU). RECIPE=chapter runs the chapter's (hours on a CPU)
NOTICE_quick-b32 := the quick-b32 recipe (67x67, kaiming-alive init, batch 32, 4 epochs, lr 0.05 after a half-epoch warm-up, decaying to 0 along a cosine: the quick recipe in fewer images, for a CPU without bf16). RECIPE=quick or RECIPE=chapter runs the others
NOTICE_chapter := the chapter's recipe (224x224, Xavier init, lr 0.05, 10 epochs)
BIN := $(VENV)/bin
comma := ,

.PHONY: train train-notice test summary install clean

$(BIN)/nin: pyproject.toml setup.py nin_runtime.pth constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[all,test]'
	touch $(BIN)/nin

install: $(BIN)/nin

train-notice:
	@echo "make train: $(if $(HAVE_GPU),a GPU found,no GPU found (nvidia-smi lists none)$(comma) a CPU $(if $(HAVE_BF16),with,without) native bf16): $(BACKEND) trains with $(or $(NOTICE_$(RECIPE)),recipe $(RECIPE))"

train: train-notice install
	$(BIN)/nin train --backend $(BACKEND) --recipe $(RECIPE) --out runs/$(BACKEND) $(ARGS)

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

summary: install
	$(BIN)/nin summary --backend all $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
