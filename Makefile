# Two entry points for a fresh machine (see README.md):
#   make quick   quick MAML + ProtoNet baseline: train, evaluate, print the table
#   make test    the whole test suite, with the docstring examples (doctests)
#   make lint    ruff's checks (configured in pyproject.toml); .ci/run runs it before the tests
# Both create (or reuse) the virtual environment in $(VENV) first.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv quick test bench lint format clean-venv

venv: $(STAMP)

# learn2learn 0.2.0's sdist ships C files from an old Cython that do not compile on
# Python >= 3.11 (github.com/learnables/learn2learn/issues/413). Build it without isolation against the
# torch/Cython already in the venv, and let `build_ext` re-cythonize its .pyx sources.
# Its declared gsutil/qpth are not needed to import it (and qpth does not build
# without isolation), hence --no-deps for it and for our own package.
$(STAMP): requirements.txt setup.cfg
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1 Cython
	grep -v '^learn2learn' requirements.txt > $(VENV)/requirements-nol2l.txt
	$(PIP) install -q -r $(VENV)/requirements-nol2l.txt pytest
	$(PY) -c "import learn2learn" 2>/dev/null || \
	  $(PIP) install -q --no-build-isolation --no-deps \
	    --config-settings=--build-option=build_ext learn2learn==0.2.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "from fewshot_cli.l2l import l2l; print('environment ready: learn2learn', l2l.__version__)"
	touch $@

# Fetches Omniglot through torchvision when $$FEWSHOT_DATA (or ~/.cache/fewshot) lacks it.
# Writes to runs/quick (ignored by git); a second run only prints the table again.
quick: venv
	$(VENV)/bin/fewshot reproduce --budget quick --out runs/quick --download --jobs 2 --threads 2

test: venv
	$(PY) -m pytest -q  # tests/ and the doctests of fewshot_cli/ (setup.cfg)

# Ruff (pyflakes, bugbear, import order, pyupgrade...: pyproject.toml), installed into the venv
# on first use. `make lint` checks the code and that it is formatted; `make format` formats it.
RUFF := $(VENV)/bin/ruff

$(RUFF): | $(STAMP)
	$(PIP) install -q ruff

lint: venv $(RUFF)
	$(RUFF) check .
	$(RUFF) format --check .

format: venv $(RUFF)
	$(RUFF) check --fix --select I .
	$(RUFF) format .

bench: venv
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.batches --threads 2
	$(PY) -m benchmarks.startup
	$(PY) -m benchmarks.datasets --threads 1
	$(PY) -m benchmarks.allocator

clean-venv:
	rm -rf $(VENV)
