#!/bin/bash
# The shipped detector's five-stage recipe (Makefile: train-detector) on a lent GPU machine without
# network or a pip install (see benchmarks/gpu_checks.sh), with every default (train.cuda_graph on,
# data workers by core count), timed per stage. DEADLINE (seconds, default 440) bounds the whole:
# a stage still running then is interrupted (checkpoint kept). Time left after the recipe goes to
# benchmarks/bf16_overflow.py. Writes $OUT/recipe.txt, $OUT/recipe.tar.gz (the last stage's
# checkpoint, every stage's metrics.csv, config.yaml and log) and $OUT/bf16.txt.
set -u
OUT=${OUT:-runs/gpu_recipe}
RUNS=${RUNS:-/tmp/recipe}
DEADLINE=${DEADLINE:-440}
mkdir -p "$OUT" "$RUNS"
[ -e split_perception/training ] || ln -s ../training split_perception/training  # setup.py's package_dir
export PYTHONPATH=$PWD:$PWD/runs/pydeps
t0=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
prev=""
for stage in stage1 stage2 stage3 stage4 ""; do
    name=split_spair${stage:+_$stage}
    config=config/train_split_spair${stage:+_$stage}.yaml
    init=${prev:+--init $RUNS/$prev/checkpoint.safetensors}
    [ "$(left)" -gt 20 ] || { echo "$name: not started, out of time" | tee -a "$OUT/recipe.txt"; break; }
    s=$(date +%s)
    timeout -s INT "$(left)" python -m split_perception.cli train "$config" --out "$RUNS/$name" $init > "$RUNS/$name.log" 2>&1
    rc=$?
    echo "$name: rc $rc, $(( $(date +%s) - s )) s, $(tail -n 1 "$RUNS/$name/metrics.csv" | cut -d, -f1-20)" | tee -a "$OUT/recipe.txt"
    [ $rc -eq 0 ] || break
    prev=$name
done
echo "recipe: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/recipe.txt"
last=$(ls -td "$RUNS"/split_spair*/ | head -n 1)
(cd "$RUNS" && for f in *.log; do tr '\r' '\n' < "$f" | grep -v "^$" | grep -v "it/s\]$\|s/it\]$" > "$f.txt"; done)
tar czf "$OUT/recipe.tar.gz" -C "$RUNS" --exclude=optimizer.safetensors --exclude='*.log' \
    $(cd "$RUNS" && ls -d split_spair*/metrics.csv split_spair*/config.yaml split_spair*.log.txt) \
    "$(basename "$last")/checkpoint.safetensors" "$(basename "$last")/checkpoint.json"
if [ "$(left)" -gt 60 ]; then
    timeout -s INT "$(left)" python benchmarks/bf16_overflow.py --seconds $(( $(left) - 15 )) > "$OUT/bf16.txt" 2>&1
fi
cat "$OUT/recipe.txt"; tail -n 5 "$OUT/bf16.txt" 2>/dev/null
