#!/bin/bash
# Issue 10's GPU checks in one run, most wanted first, each bounded so that the later ones
# still run inside a time limit (a lent GPU machine gives 10 minutes a command; what does not
# fit, the last steps, goes in a second call on the still-warm machine).
#
#   LIMIT=570 bash bench/gpu_checks.sh 2>&1 | tee gpu.log
#   SKIP="mps sweep-mps sweep" LIMIT=400 bash bench/gpu_checks.sh   # the rest, in a second call
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

# The 4x goal needs the trials' kernels to run at the same time, not time-sliced: NVIDIA MPS.
# First the same 4 trainings at once without and with it, then the default sweep under it (the
# daemon's private pipe folder reaches the Ray workers through the environment).
step mps 90 python3 bench/mps.py --data mnist
step sweep-mps 130 bash -c 'mps=$(mktemp -d)
  export CUDA_MPS_PIPE_DIRECTORY=$mps/pipe CUDA_MPS_LOG_DIRECTORY=$mps/log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d || exit 1
  python3 -m vae_sweep run --no-analyze --name under-mps
  rc=$?
  echo quit | nvidia-cuda-mps-control
  ((rc == 0)) && python3 bench/sweep_overhead.py --folder results/under-mps'
# The default sweep, then where its time went: the split of a worker's start (began importing
# vae-sweep, had it imported, first trial, first epoch), and how busy the GPU itself was
# (nvidia-smi's utilization samples during the tuning).
step sweep 150 bash -c 'gpu=$(mktemp)
  nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    >"$gpu" 2>&1 &
  smi=$!
  python3 -m vae_sweep run
  rc=$?
  kill $smi
  ((rc == 0)) && python3 bench/sweep_overhead.py --folder "$(ls -td results/*/ | head -1)" \
    --gpu-log "$gpu"'
# The GPU tests: vae_core.device changed since they last ran on a GPU (cuDNN autotuning off).
# There pytest reported 94 s and its process took 6 s more to exit.
step gpu-tests 130 python3 -m pytest tests/gpu -q -p no:cacheprovider
# Issue 10's 4x goal: the hand-written Tune script against vae-sweep, 16 trials x 4 epochs.
step tutorial 200 python3 bench/tune_tutorial.py --data mnist
# Each import in a fresh process, and whether its bytecode is cached.
step imports 45 python3 bench/import_times.py
# vae_core's own time outside epochs, trial after trial in one process, with new model sizes.
step trial-overhead-sizes 45 python3 bench/trial_overhead.py --device cuda --data mnist \
  --sizes 28:900 12:751 56:719 4:399
step packing 150 python3 bench/packing.py --data mnist --shares 0.5 0.25 0.125
step cudnn-autotune 70 python3 bench/cudnn_autotune.py --data mnist
step eager-throughput 45 python3 bench/throughput.py --device cuda --data mnist --train-limit 0 \
  --epochs 2 --rounds 3 --batch-sizes 128 512 --no-cuda-graph
echo "=== done after $((SECONDS - T0)) s"
