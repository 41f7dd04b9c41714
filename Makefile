# The two commands of the README. Each sets itself up on a fresh machine:
# a virtual environment in .venv with the project installed (editable).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: demo test install bench fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,capture,window,video]'
	touch $(STAMP)

install: $(STAMP)

## make demo: the main job on the built-in scene (see README)
demo: $(STAMP)
	$(BIN)/probewarp demo --out $(OUT)

## make test: the whole test suite (GL tests run on Mesa llvmpipe through EGL)
test: $(STAMP)
	$(BIN)/python -m pytest tests

## make bench: the benchmarks (JSON + plots under benchmarks/results/)
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## make fuzz: the coverage-guided fuzz campaigns of every reader (docs/RELIABILITY.md)
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	$(BIN)/python fuzz/run.py --all --cases 10000

clean:
	rm -rf $(VENV) out build *.egg-info
