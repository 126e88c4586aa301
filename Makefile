# Two commands do all set-up on a fresh machine:
#   make train   - creates .venv on first use, then trains NiN on Fashion-MNIST (BACKEND=torch|mxnet|tf, ARGS=...)
#   make test    - creates .venv on first use, then runs the test suite over all three backends
PYTHON ?= python3
VENV ?= .venv
BACKEND ?= torch
ARGS ?=
BIN := $(VENV)/bin

.PHONY: train test summary install clean

$(BIN)/nin: pyproject.toml setup.py nin_runtime.pth constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[all,test]'
	touch $(BIN)/nin

install: $(BIN)/nin

train: install
	$(BIN)/nin train --backend $(BACKEND) --out runs/$(BACKEND) $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

summary: install
	$(BIN)/nin summary --backend all $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
