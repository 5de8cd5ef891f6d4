#!/bin/bash
# The GPU checks of issues 12 and 13 as one script, for a lent GPU machine without network or a
# pip install of this package (the device tool: its Python has torch, onnxruntime, opencv,
# scikit-image, safetensors). Writes six files under $OUT (default runs/gpu_checks; the device tool
# returns at most 8, each under 16 MiB):
#   machine.txt    nvidia-smi and the Python packages found
#   inference.txt  training.txt  data.txt   benchmarks/bench_cuda.py (batch-1 latency, steps/s, data path)
#   bf16.txt       benchmarks/bf16_overflow.py (where bf16 autocast training goes non-finite)
#   runs.tar.gz    two training runs (logs, metrics.csv; the detector's checkpoint): the shipped detector
#                  fine-tuned with the stage-5 config at batch 64 (ft_gpu), the slot model's config
#                  trained from scratch at batch 32 (monet_gpu; its 25 MB checkpoint left out)
# Pure-Python packages the machine may lack (yaml, tqdm) are looked for last in runs/pydeps.
# SECONDS_PARALLEL (default 240) bounds the three training runs, which share the GPU.
set -u
OUT=${OUT:-runs/gpu_checks}
RUNS=${RUNS:-/tmp/gpu_checks_runs}
mkdir -p "$OUT" "$RUNS"
[ -e split_perception/training ] || ln -s ../training split_perception/training  # setup.py's package_dir
export PYTHONPATH=$PWD:$PWD/runs/pydeps
PAR=${SECONDS_PARALLEL:-240}
nvidia-smi > "$OUT/machine.txt" 2>&1
python -c "import torch, yaml, tqdm, skimage, onnxruntime; print(torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/machine.txt"
t0=$(date +%s)
timeout 90 python benchmarks/bench_cuda.py --part inference > "$OUT/inference.txt" 2>&1; echo "inference rc=$? $(( $(date +%s) - t0 )) s"
timeout 200 python benchmarks/bench_cuda.py --part training > "$OUT/training.txt" 2>&1; echo "training rc=$? $(( $(date +%s) - t0 )) s"
timeout 60 python benchmarks/bench_cuda.py --part data > "$OUT/data.txt" 2>&1; echo "data rc=$? $(( $(date +%s) - t0 )) s"
timeout -s INT $((PAR + 10)) python benchmarks/bf16_overflow.py --seconds "$PAR" --workers 3 > "$OUT/bf16.txt" 2>&1 &
timeout -s INT "$PAR" python -m split_perception.cli train config/train_split_spair.yaml \
    --init split_perception/weights/split_spair.safetensors --out "$RUNS/ft_gpu" --set train.batch_size=64 \
    --set train.cuda_graph=true --set train.data_workers=6 --set train.log_every=100 > "$RUNS/ft_gpu.log" 2>&1 &
timeout -s INT "$PAR" python -m split_perception.cli train config/train_monet_rn18.yaml --out "$RUNS/monet_gpu" \
    --set train.batch_size=32 --set train.cuda_graph=true --set train.data_workers=4 --set train.steps=4000 \
    --set train.lr_decay_steps=1500 --set train.log_every=100 > "$RUNS/monet_gpu.log" 2>&1 &
wait
echo "parallel runs done $(( $(date +%s) - t0 )) s"
for f in "$RUNS"/*.log; do tr '\r' '\n' < "$f" | grep -v "^$" | grep -v "it/s\|s/it" > "$f.txt"; done
(cd "$RUNS" && tar czf "$OUT/runs.tar.gz" *.log.txt */metrics.csv */config.yaml ft_gpu/checkpoint.safetensors ft_gpu/checkpoint.json)
tail -n 40 "$OUT"/*.txt
