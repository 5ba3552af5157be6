# Two commands do everything (README "Quick start"):
#   make reproduce   set up .venv, make the data present, regenerate every figure (profile quick)
#   make test        set up .venv, make the data present, run all tests and every notebook under nbval
# `make lab` opens JupyterLab on notebooks/ with the project's environment.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick

.PHONY: reproduce test lab data setup clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

data: $(STAMP)
	$(PY) -m swatlib.data ensure fashion-mnist
	$(PY) -m swatlib.data ensure wordnet

reproduce: data
	$(PY) -m swatlib.reproduce --profile $(PROFILE) --jobs auto

# Two pytest processes, one per core of the reference machine (alone, pytest kept one core busy and left
# the other idle: 10 min against 6.5); --dist loadfile keeps each file in one process, so a notebook's
# cells run in order on one kernel and a module's fixtures are built once.
test: data
	$(PY) -m swatlib.reproduce --profile smoke --prepare-only
	$(PY) -m pytest tests build/prepared/smoke --nbval-lax --nbval-current-env -p no:cacheprovider \
		-n 2 --dist loadfile

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean:
	rm -rf build
