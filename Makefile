# Entry points: `make demo` trains the tiny sDiT on the embedded synthetic faces, `make test`
# lints and runs the default test suite, `make test-all` adds the slow tests. All create .venv
# on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_WORKDIR ?= runs/sdit_tiny
# The tests check the .pt importers against PyTorch; the CPU build is pinned so pip does not pull
# a CUDA build. `make test TORCH=` skips it (those tests then skip themselves).
TORCH ?= torch==2.13.0

LEO_ANIMATOR ?= runs/animator_tiny
LEO_LMDM ?= runs/lmdm_tiny
LEO_OUT ?= runs/leo_demo

.PHONY: setup demo leo-demo test test-all lint benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m data_pipelines.face_models  # face detector + FaceMesh files, from the MediaPipe wheel
	touch $(STAMP)

setup: $(STAMP)

# Trains the tiny sDiT (or resumes / reuses the finished run in DEMO_WORKDIR), reenacts held-out
# identity 1 with held-out motion 0 for 256 frames, then runs the consistency study (512 frames,
# 2 seeds, contiguous and random plans, every method; docs/evaluation.md).
demo: $(STAMP)
	$(PY) -m launch.train --config configs/sdit.py:tiny --workdir $(DEMO_WORKDIR)
	$(PY) -m launch.reenact --checkpoint $(DEMO_WORKDIR) --driving synthetic:0 \
		--source synthetic:4 --frames 256 --steps 10 --out $(DEMO_WORKDIR)/reenact/cross_identity.mp4
	$(PY) -m launch.evaluate --checkpoint $(DEMO_WORKDIR) --frames 512 --clips 1 \
		--out $(DEMO_WORKDIR)/consistency

# LEO: trains the tiny animator, then the tiny LMDM on the animator's own motion codes (each
# resumes, or is reused when finished), then writes a 1024-frame video from held-out video 0's
# first frame by LEO's chaining and by the anchored LMDM side by side, the same motion on an
# edited first frame, and a report (docs/leo.md, "The LEO demo").
leo-demo: $(STAMP)
	$(PY) -m launch.train --config configs/animator.py:tiny --workdir $(LEO_ANIMATOR)
	$(PY) -m launch.train --config configs/lmdm.py:tiny --workdir $(LEO_LMDM) \
		--config.data.animator_workdir=$(LEO_ANIMATOR)
	$(PY) -m launch.leo_demo --animator $(LEO_ANIMATOR) --lmdm $(LEO_LMDM) \
		--first-frame synthetic:0 --frames 1024 --out $(LEO_OUT)

$(VENV)/.torch-stamp: $(STAMP)
	$(if $(TORCH),$(PY) -m pip install --quiet '$(TORCH)')
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# pytest exits 5 when it collected no tests; that must not pass as green.
PYTEST = rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

# The default run: every test not marked slow (--durations: the slowest, to keep runs short).
test: lint $(VENV)/.torch-stamp
	$(PY) -m pytest -q -n 2 --durations=15; $(PYTEST)

# The full suite: the default run, then the slow tests (kill -9 and SIGTERM suites of every
# task, real multi-process jobs, sweeps). CI runs this.
test-all: test
	$(PY) -m pytest -q -n 2 -m slow --durations=15; $(PYTEST)

benchmark: $(STAMP)
	$(PY) -m launch.benchmark --config configs/sdit.py:tiny
	$(PY) -m launch.benchmark --config configs/sdit.py:S

clean:
	rm -rf $(VENV) runs
