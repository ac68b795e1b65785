# Two entry points: `make demo` trains the tiny sDiT on the embedded synthetic faces,
# `make test` lints and runs the test suite. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_WORKDIR ?= runs/sdit_tiny

.PHONY: setup demo test lint benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.train --config configs/sdit.py:tiny --workdir $(DEMO_WORKDIR)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# pytest exits 5 when it collected no tests; that must not pass as green.
test: lint
	$(PY) -m pytest -q -n 2; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

benchmark: $(STAMP)
	$(PY) -m launch.benchmark --config configs/sdit.py:tiny
	$(PY) -m launch.benchmark --config configs/sdit.py:S

clean:
	rm -rf $(VENV) runs
