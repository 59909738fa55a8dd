#!/usr/bin/env bash
# Train nafp-jax on one node of a multi-node GPU cluster; run it on every node.
#
#   launch/gpu_cluster.sh [--dry-run]
#
# Under SLURM (srun launch/gpu_cluster.sh) the process count and id come from
# SLURM_NTASKS / SLURM_PROCID and the coordinator is the first host of
# SLURM_JOB_NODELIST.  Elsewhere (Kubernetes, plain ssh) set them yourself:
#   COORDINATOR_ADDRESS  host:port of process 0, reachable from every node (e.g. 10.0.0.2:1234)
#   NUM_PROCESSES        number of nodes (one process per node, each with all its GPUs)
#   PROCESS_ID           0 .. NUM_PROCESSES-1, different on every node
# Required:
#   WORKDIR              shared path or gs:// bucket for checkpoints (the same on every node)
# Optional:
#   DATA_DIR             TFDS data dir readable from every node (default: $NAFP_CACHE/tfds)
#   CONFIG               default configs/large_batch_gpu.py
#   VENV                 python environment with nafp-jax[cuda] (default: .venv of this checkout)
#   EXTRA_FLAGS          more flags for nafp_jax.main
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
(( $# == 0 )) || { echo "usage: $0 [--dry-run]" >&2; exit 2; }

if [[ -n "${SLURM_PROCID:-}" ]]; then
  : "${NUM_PROCESSES:=${SLURM_NTASKS:?SLURM_NTASKS not set}}"
  : "${PROCESS_ID:=$SLURM_PROCID}"
  if [[ -z "${COORDINATOR_ADDRESS:-}" ]]; then
    first_host="$(scontrol show hostnames "${SLURM_JOB_NODELIST:?SLURM_JOB_NODELIST not set}" | head -n1)"
    COORDINATOR_ADDRESS="${first_host}:${COORDINATOR_PORT:-12345}"
  fi
fi

missing=()
for var in COORDINATOR_ADDRESS NUM_PROCESSES PROCESS_ID WORKDIR; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if (( ${#missing[@]} )); then
  echo "error: set ${missing[*]} (see the top of $0)" >&2
  exit 2
fi
[[ "$COORDINATOR_ADDRESS" == *:* ]] || { echo "error: COORDINATOR_ADDRESS must be host:port, got $COORDINATOR_ADDRESS" >&2; exit 2; }
[[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]] || { echo "error: NUM_PROCESSES must be a positive integer, got $NUM_PROCESSES" >&2; exit 2; }
[[ "$PROCESS_ID" =~ ^[0-9]+$ ]] && (( PROCESS_ID < NUM_PROCESSES )) || {
  echo "error: PROCESS_ID must be in 0..$((NUM_PROCESSES - 1)), got $PROCESS_ID" >&2; exit 2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${CONFIG:-configs/large_batch_gpu.py}"
VENV="${VENV:-$REPO_ROOT/.venv}"
EXTRA_FLAGS="${EXTRA_FLAGS:-}"
[[ -f "$REPO_ROOT/$CONFIG" ]] || { echo "error: no config $CONFIG in $REPO_ROOT" >&2; exit 2; }
data_flag=()
[[ -n "${DATA_DIR:-}" ]] && data_flag=("--config.data.data_dir=$DATA_DIR")

cmd=("$VENV/bin/python" -m nafp_jax.main --distributed
     --coordinator_address="$COORDINATOR_ADDRESS" --num_processes="$NUM_PROCESSES"
     --process_id="$PROCESS_ID" --config "$REPO_ROOT/$CONFIG" --workdir "$WORKDIR"
     "${data_flag[@]}")
# shellcheck disable=SC2206  # EXTRA_FLAGS is meant to split into flags
cmd+=($EXTRA_FLAGS)
echo "+ ${cmd[*]}"
if (( ! DRY_RUN )); then
  cd "$REPO_ROOT"
  exec "${cmd[@]}"
fi
