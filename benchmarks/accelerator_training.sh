#!/usr/bin/env bash
# Training-step throughput and MFU on an accelerator: issue 5's GPU rows in one run.
#
#   benchmarks/accelerator_training.sh            # paper, batch 256/1024/4096, bf16 and float32
#
# Runs benchmarks/train_throughput.py once per (dtype, batch) and writes every log to
# $OUT (default ./accelerator_training_logs), one file per run plus summary.txt with
# the step, segments/s and MFU lines.  Meant for a machine that has JAX, Flax, Optax
# and Orbax but cannot reach a package registry: wheels of what it lacks (ml_collections,
# librosa and its pure-Python dependencies) can be put in $WHEELS beforehand, e.g.
#   pip download --no-deps --python-version 3.12 --only-binary=:all: \
#     --platform manylinux2014_x86_64 -d wheels ml_collections librosa audioread soxr \
#     pooch decorator soundfile lazy_loader
# and are installed from there with no index.  Where TensorFlow and pyroomacoustics
# import on that machine, the pair pipeline is then timed on its host CPUs too
# (benchmarks/pipeline_throughput.py, at most PIPELINE_TIMEOUT s including building the
# config's datasets), so pipeline/step = its pairs/s / (steps/s x pairs per step) comes
# from the same host; else it is skipped with a line saying so, and the ratio is
# computed from a CPU host's pairs/s per core.
# Optional: CONFIG (default configs/paper.py), BATCHES (default "256 1024 4096"),
# DTYPES (default "bfloat16 float32"), STEPS (default 10), PYTHON (default python3),
# PIPELINE (default 1; 0 skips the pipeline), PIPELINE_TIMEOUT (default 300).
set -uo pipefail

CONFIG=${CONFIG:-configs/paper.py}
BATCHES=${BATCHES:-256 1024 4096}
DTYPES=${DTYPES:-bfloat16 float32}
STEPS=${STEPS:-10}
PYTHON=${PYTHON:-python3}
PIPELINE=${PIPELINE:-1}
PIPELINE_TIMEOUT=${PIPELINE_TIMEOUT:-300}
OUT=${OUT:-./accelerator_training_logs}
mkdir -p "$OUT"

if [[ -n "${WHEELS:-}" ]]; then
  "$PYTHON" -m pip install --no-index --no-deps --find-links "$WHEELS" "$WHEELS"/*.whl \
    > "$OUT/pip.log" 2>&1 || { echo "installing wheels from $WHEELS failed, see $OUT/pip.log"; exit 1; }
fi
"$PYTHON" -c "import jax; print('devices:', jax.devices())" | tee "$OUT/summary.txt"

status=0
for dtype in $DTYPES; do
  for batch in $BATCHES; do
    log="$OUT/train_${dtype}_${batch}.log"
    echo "== $CONFIG dtype=$dtype batch=$batch" | tee -a "$OUT/summary.txt"
    if "$PYTHON" benchmarks/train_throughput.py --config "$CONFIG" --batch "$batch" \
        --steps "$STEPS" --config.model.dtype="$dtype" > "$log" 2>&1; then
      grep -E "^config=|step .* ms|^model FLOPs" "$log" | tee -a "$OUT/summary.txt"
    else
      echo "failed (see $(basename "$log")): $(tail -n 1 "$log")" | tee -a "$OUT/summary.txt"
      status=1
    fi
  done
done

if [[ "$PIPELINE" == 1 ]]; then
  log="$OUT/pipeline.log"
  echo "== pair pipeline on this host ($(nproc) CPUs)" | tee -a "$OUT/summary.txt"
  if ! "$PYTHON" -c "import tensorflow, pyroomacoustics" > /dev/null 2>&1; then
    echo "skipped: TensorFlow or pyroomacoustics does not import here" | tee -a "$OUT/summary.txt"
  elif timeout "$PIPELINE_TIMEOUT" "$PYTHON" -m benchmarks.pipeline_throughput --config "$CONFIG" \
      --batch 1024 --reads=64 --rounds 1 > "$log" 2>&1; then
    grep -E "^config=|pairs/s" "$log" | tee -a "$OUT/summary.txt"
  else
    echo "failed or timed out (see $(basename "$log")): $(tail -n 1 "$log")" | tee -a "$OUT/summary.txt"
    status=1
  fi
fi
exit $status
