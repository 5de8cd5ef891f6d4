# One command each: `make demo` (main job on the embedded default) and `make test`.
# Both create .venv when it is missing and do nothing more when it is up to date.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean
setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m split_perception.cli demo

test: setup
	$(PY) -m pytest -q test

bench: setup
	$(PY) benchmarks/bench_scenes.py

clean:
	rm -rf $(VENV) build *.egg-info
