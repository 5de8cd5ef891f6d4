# One command each: `make demo` (main job on the embedded default) and `make test`.
# Both create .venv when it is missing and do nothing more when it is up to date.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench train-detector clean
setup:
	@bash scripts/setup_env.sh

demo: setup  # camera + detector + slot node as ROS 2 processes; pictures in runs/demo (options: DEMO_ARGS="--frames 0 ...")
	$(PY) -m split_perception.cli demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q test

bench: setup  # every benchmark; each prints its figures (docs/RESULTS.md records them)
	$(PY) benchmarks/bench_scenes.py
	$(PY) benchmarks/bench_folder_data.py
	$(PY) benchmarks/bench_detector.py
	$(PY) benchmarks/bench_runtime.py
	$(PY) benchmarks/bench_monet_efficiency.py --out runs/bench

train-detector: setup  # the shipped detector from scratch: stage 1 (4x4 grid), 2 (6x6 grid), 3 (more outlines), 4 (crowded, one hue), 5 (touching objects)
	$(PY) -m split_perception.cli train config/train_split_spair_stage1.yaml
	$(PY) -m split_perception.cli train config/train_split_spair_stage2.yaml --init runs/split_spair_stage1/checkpoint.safetensors
	$(PY) -m split_perception.cli train config/train_split_spair_stage3.yaml --init runs/split_spair_stage2/checkpoint.safetensors
	$(PY) -m split_perception.cli train config/train_split_spair_stage4.yaml --init runs/split_spair_stage3/checkpoint.safetensors
	$(PY) -m split_perception.cli train config/train_split_spair.yaml --init runs/split_spair_stage4/checkpoint.safetensors

clean:
	rm -rf $(VENV) build *.egg-info
