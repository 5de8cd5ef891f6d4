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

# RUNS: folder of the stage runs; TRAIN_ARGS: options given to every stage, e.g.
#   make train-detector RUNS=runs/wide TRAIN_ARGS="--set model.size_prior_std=1.0 --set data.sprite_size_jitter=7"
# A stage whose run folder has a checkpoint resumes it (a finished stage just ends), so an interrupted
# recipe continues where it stopped when the same command is run again.
RUNS ?= runs
TRAIN_ARGS ?=
train-detector: setup  # the shipped detector from scratch: stages 1-5 on camera-like walls and objects: 1 (4x4 grid), 2 (6x6 grid), 3 (more outlines), 4 (crowded, one hue), 5 (touching objects); 6 in two branches (bright / camera-like objects on the train palette), averaged into $(RUNS)/split_spair
	$(PY) -m split_perception.cli train config/train_split_spair_stage1.yaml --out $(RUNS)/split_spair_stage1 $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair_stage2.yaml --out $(RUNS)/split_spair_stage2 --init $(RUNS)/split_spair_stage1/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair_stage3.yaml --out $(RUNS)/split_spair_stage3 --init $(RUNS)/split_spair_stage2/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair_stage4.yaml --out $(RUNS)/split_spair_stage4 --init $(RUNS)/split_spair_stage3/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair_stage5.yaml --out $(RUNS)/split_spair_stage5 --init $(RUNS)/split_spair_stage4/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair.yaml --out $(RUNS)/split_spair_stage6_bright --init $(RUNS)/split_spair_stage5/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli train config/train_split_spair_stage6_camera.yaml --out $(RUNS)/split_spair_stage6_camera --init $(RUNS)/split_spair_stage5/checkpoint.safetensors $(TRAIN_ARGS)
	$(PY) -m split_perception.cli average $(RUNS)/split_spair_stage6_bright/checkpoint.safetensors $(RUNS)/split_spair_stage6_camera/checkpoint.safetensors -o $(RUNS)/split_spair/checkpoint.safetensors

clean:
	rm -rf $(VENV) build *.egg-info
