#!/bin/bash
# The GPU checks in one run, most wanted first, each bounded so that the later ones
# still run inside a time limit (a lent GPU machine gives 10 minutes a command; what does not
# fit, the last steps, goes in a second call on the still-warm machine).
#
#   LIMIT=570 bash bench/gpu_checks.sh 2>&1 | tee gpu.log
#   # then the rest, on the still-warm machine (leave out of SKIP what the first did not reach):
#   SKIP="gpu-tests sweep tutorial" LIMIT=250 bash bench/gpu_checks.sh
#
# Needs vae-sweep's dependencies importable and full MNIST's four .gz files in
# ~/.cache/vae-sweep/mnist (vae_core's default root), so that `vae-sweep run` with no options
# reads full MNIST. Figures go to BENCHMARKS.md with the card they ran on.
set -u
T0=$SECONDS
LIMIT=${LIMIT:-570}

# The GPU machine's image ships torch without compiled bytecode and sets PYTHONDONTWRITEBYTECODE=1,
# so every process, each Ray worker too, compiled torch and Ray Tune from source: ~5 s more per
# worker, which no pip install leaves a user with (pip compiles at install). Compile once, as pip
# would have (4 s there). The figures in BENCHMARKS.md from before 2026-11-26's second run were
# taken without it.
unset PYTHONDONTWRITEBYTECODE
python3 -m compileall -q -j 0 -x '/tests?/' $(python3 -c 'import importlib.util as u, os
print(" ".join(os.path.dirname(u.find_spec(n).origin) for n in
  ("torch", "numpy", "pandas", "ray", "optuna", "sqlalchemy", "alembic")))') >/dev/null
echo "=== bytecode compiled after $((SECONDS - T0)) s"

step() {  # step NAME CAP_SECONDS COMMAND...: runs COMMAND for at most CAP (and the time left)
  local name=$1 cap=$2 left=$((LIMIT - (SECONDS - T0)))
  shift 2
  if [[ " ${SKIP:-} " == *" $name "* ]]; then
    echo "=== skipped $name: SKIP"
    return
  fi
  local t=$((cap < left ? cap : left))
  if ((t < 15)); then
    echo "=== skipped $name: ${left} s left"
    return
  fi
  echo "=== $name (at most $t s, starting at $((SECONDS - T0)) s)"
  local start=$SECONDS
  timeout -k 5 "$t" "$@"
  echo "=== $name: exit $? after $((SECONDS - start)) s"
}

# `vae-sweep run` shares a GPU under NVIDIA MPS where it can, else its trials take turns on it
# (sweeps/sharing.py). First the GPU tests (that choice included), then the default sweep under
# it, the comparison with the hand-written Tune script as `vae-sweep run` runs, and the trials
# taking turns for comparison. Each sweep gets a name of its own, so that a second call on the
# same warm machine does not meet the first's results folder.
if ! command -v nvidia-cuda-mps-control >/dev/null; then
  echo "=== no nvidia-cuda-mps-control on this machine: the default takes turns on the GPU"
  MPS_BENCH_MODES="off"
fi
RUN=$(date +%H%M%S)
step gpu-tests 300 python3 -m pytest tests/gpu -q -p no:cacheprovider
# The default sweep, then where its time went: the share of slot time inside epochs, each
# trial's seconds outside them (from Ray's result.json), and how busy the GPU itself was
# (nvidia-smi's utilization samples during the tuning).
sweep() {  # sweep NAME [OPTIONS...]
  local name=$1 gpu rc smi
  shift
  gpu=$(mktemp)
  nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    >"$gpu" 2>&1 &
  smi=$!
  python3 -m vae_sweep run --name "$name-$RUN" "$@"
  rc=$?
  kill $smi
  ((rc == 0)) && python3 bench/sweep_overhead.py --folder "results/$name-$RUN" --gpu-log "$gpu"
}
export -f sweep  # for the `bash -c` that `step` bounds in time
export RUN
step sweep 150 bash -c 'sweep default'
step tutorial 330 python3 bench/tune_tutorial.py --data mnist --rounds 3
# What bounds the speed-up: the step's kernels by GPU time at batch 128, and Adam's fused kernel.
step step-profile 60 python3 bench/step_profile.py --data mnist --optimizers foreach fused
step sweep-time-sliced 130 bash -c 'sweep time-sliced --time-sliced --no-analyze'
# Which share of the GPU per trial is fastest, shared as `vae-sweep run` shares it.
step packing 150 python3 bench/packing.py --data mnist --shares 0.25 0.125
# Four trainings at once: processes that take turns on the GPU, and the same under MPS.
step mps 130 python3 bench/mps.py --data mnist --modes ${MPS_BENCH_MODES:-off on}
# Each import in a fresh process, and whether its bytecode is cached.
step imports 45 python3 bench/import_times.py
# vae_core's own time outside epochs, trial after trial in one process, with new model sizes.
step trial-overhead-sizes 45 python3 bench/trial_overhead.py --device cuda --data mnist \
  --sizes 28:900 12:751 56:719 4:399
step cudnn-autotune 70 python3 bench/cudnn_autotune.py --data mnist
step eager-throughput 45 python3 bench/throughput.py --device cuda --data mnist --train-limit 0 \
  --epochs 2 --rounds 3 --batch-sizes 128 512 --no-cuda-graph
echo "=== done after $((SECONDS - T0)) s"
