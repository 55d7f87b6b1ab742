# Two targets do all the setup on a fresh machine:
#   make demo   creates .venv, checks the shipped `dev` environment, and serves the example model
#   make test   creates .venv and runs ruff, mypy and the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fermion-installed

.PHONY: demo test lint typecheck unit docker-up clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[serve,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fermion validate dev
	$(BIN)/fermion plan dev
	$(BIN)/fermion shapes
	$(BIN)/python examples/classifier/build.py build/classifier
	$(BIN)/python examples/classifier/demo.py build/classifier/classifier.pt

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable import hook, so it checks a tree of links that lays the
# top-level folders out as the fermion.* namespace they are installed as.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/fermion
	for d in cli components environments policies runtime_images stacks templates; do ln -s ../../$$d .typecheck/fermion/$$d; done
	$(BIN)/mypy -p fermion.cli -p fermion.components -p fermion.environments -p fermion.policies -p fermion.runtime_images -p fermion.stacks

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The Docker engine, the loopback registry and the base image that tests/images needs (as root).
docker-up:
	.ci/docker-up

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .ruff_cache .pytest_cache build
