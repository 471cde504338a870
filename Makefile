# The set-up contract: `make demo` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: install build test demo bench system-deps clean

system-deps:
	@missing=$$(grep -v -e '^#' -e '^$$' system-packages.txt | while read -r p; do \
	    dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q 'ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing system packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml setup.py system-packages.txt
	$(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=68" wheel "Cython>=3.0" "cffi>=1.16"
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	touch $@

install: $(VENV)/.installed build

# Incremental: recompiles only the Cython/C sources that changed.
build: $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/python -m microsandbox.demo

bench: install
	$(PY) -m pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only --benchmark-columns=min,median,mean,rounds $(PYTEST_ARGS)

clean:
	rm -rf build $(VENV) microsandbox/_core/*.c microsandbox/_core/*.so microsandbox/_vmm*.so microsandbox/*.so
