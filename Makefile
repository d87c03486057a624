# rc_perception developer entry points. On a fresh machine:
#   make demo   - set up, then run the whole pipeline on built-in synthetic data (no robot needed)
#   make test   - set up, then lint and run every test tier available here (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.rc_perception-setup
REQS   := $(wildcard requirements/*.txt)
WS     := build/colcon
# Isolate the tests' DDS traffic: loopback only, a domain of its own.
TEST_ENV := ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST PYTHONUNBUFFERED=1
# Some machines print a warning per package for index folders that do not exist; hide just those.
QUIET_PIP := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

.PHONY: help setup demo test lint pytest docs clean

help:
	@echo "make demo   run the pipeline on built-in data and write demo_output/ (runs make setup first)"
	@echo "make test   lint + every test tier (runs make setup first); CI runs this"
	@echo "make mutation  plant bugs one at a time in the pure core and codecs, report what the unit tests miss (slow; MUTATION_ARGS=...)"
	@echo "make setup  create $(VENV) from requirements/*.txt and install this package into it"
	@echo "make pytest quick: pytest only, in the venv (PYTEST_ARGS=... to select)"
	@echo "make docs   regenerate doc/parameters.md from the nodes' parameter declarations"

setup: $(STAMP)

# The ROS wheels, torch, the ONNX stack, ModelOpt and colcon resolve badly in one pip call: install them
# in this order, one call each. runtime.txt is what the nodes need (the car); torch, onnx, modelopt and
# tools are the offline tools' (requirements/README.md). ModelOpt declares setuptools>=80; colcon's
# --symlink-install needs <80, which dev.txt restores (ModelOpt's ONNX quantization runs fine with it).
$(STAMP): $(REQS) setup.py setup.cfg package.xml
	@echo "== setting up $(VENV) (first time: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/ros.txt $(QUIET_PIP)
	$(PIP) install -r requirements/runtime.txt $(QUIET_PIP)
	$(PIP) install -r requirements/torch.txt $(QUIET_PIP)
	$(PIP) install -r requirements/onnx.txt $(QUIET_PIP)
	$(PIP) install -r requirements/modelopt.txt $(QUIET_PIP)
	$(PIP) install -r requirements/tools.txt $(QUIET_PIP)
	$(PIP) install -r requirements/dev.txt $(QUIET_PIP)
	$(PIP) install --no-deps --no-build-isolation --config-settings editable_mode=compat -e . $(QUIET_PIP)
	$(BIN)/python -c "import rclpy, onnxruntime, numba, torch, modelopt.onnx.quantization, rosbags, colcon_core"
	touch $@
	@echo "== $(VENV) ready"

demo: setup
	$(BIN)/demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .

# Not part of `make test`: tens of minutes on a 2-core machine. doc/testing.md has the score and how to read it.
.PHONY: mutation
mutation: setup
	$(TEST_ENV) $(BIN)/python tools/mutation.py $(MUTATION_ARGS)

# Every tier, the way a ROS 2 workspace runs them: colcon build into a scratch workspace, then colcon test
# (pytest over test/: unit, real-rclpy node tests, packaging, launch tests where launch_testing exists).
test: lint
	mkdir -p $(WS)
	source $(BIN)/activate && cd $(WS) && \
	  colcon --log-base log build --base-paths $(CURDIR) --build-base build --install-base install \
	    --symlink-install --event-handlers console_cohesion- summary+
	source $(BIN)/activate && cd $(WS) && export $(TEST_ENV) RC_PERCEPTION_COLCON_WS=$(CURDIR)/$(WS) && \
	  rc=0; colcon --log-base log test --base-paths $(CURDIR) --build-base build --install-base install \
	    --return-code-on-test-failure --event-handlers console_direct+ \
	    --pytest-args -ra $(PYTEST_ARGS) || rc=$$?; \
	  colcon test-result --test-result-base build --verbose || true; exit $$rc

pytest: setup
	$(TEST_ENV) $(BIN)/python -m pytest -ra $(PYTEST_ARGS)

docs: setup
	$(BIN)/python -m rc_offline.docgen

clean:
	rm -rf build demo_output .pytest_cache .ruff_cache
