#!/usr/bin/env bash
# Train nafp-jax on a Cloud TPU VM slice (v4 / v5e / v5p, any size), all workers at once.
#
#   launch/tpu_vm.sh [--dry-run] create|setup|train|status|delete|all
#
# Required environment (checked up front; nothing runs if one is missing):
#   PROJECT           GCP project id
#   ZONE              e.g. us-central2-b (v4), us-west4-a (v5e), us-east5-a (v5p)
#   TPU_NAME          name of the TPU VM to create / use
#   ACCELERATOR_TYPE  e.g. v4-32, v5litepod-64, v5p-128
#   WORKDIR           gs://bucket/runs/NAME  (checkpoints, TensorBoard, config.json)
#   DATA_DIR          gs://bucket/tfds       (prepared TFDS datasets: see README "Training at scale")
# Optional:
#   CONFIG            config file (default configs/large_batch_tpu.py)
#   RUNTIME_VERSION   TPU software version (default: picked from ACCELERATOR_TYPE)
#   EXTRA_FLAGS       more flags for nafp_jax.main, e.g. "--config.num_train_steps=50000"
#   SPOT=1            create a spot (preemptible) slice; training resumes from WORKDIR when rerun
#
# `setup` ships the committed tree (git archive HEAD) and refuses while the working copy
# has uncommitted or untracked files, naming them: what the workers run is what was checked.
# `train` starts `python -m nafp_jax.main --distributed` on every worker (--worker=all),
# detached from the ssh session, logging to ~/nafp-train.log on each worker;
# jax.distributed.initialize() finds the slice's coordinator and process ids itself.
# Every command is printed shell-quoted, so a --dry-run line can be pasted as it is.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
ACTION="${1:-}"
case "$ACTION" in
  create|setup|train|status|delete|all) ;;
  *) echo "usage: $0 [--dry-run] create|setup|train|status|delete|all" >&2; exit 2 ;;
esac

missing=()
for var in PROJECT ZONE TPU_NAME ACCELERATOR_TYPE WORKDIR DATA_DIR; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if (( ${#missing[@]} )); then
  echo "error: set ${missing[*]} (see the top of $0)" >&2
  exit 2
fi
for var in WORKDIR DATA_DIR; do
  [[ "${!var}" == gs://* ]] || { echo "error: $var must be a gs:// path (all workers read it), got ${!var}" >&2; exit 2; }
done
CONFIG="${CONFIG:-configs/large_batch_tpu.py}"
EXTRA_FLAGS="${EXTRA_FLAGS:-}"
if [[ -z "${RUNTIME_VERSION:-}" ]]; then
  case "$ACCELERATOR_TYPE" in
    v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    v5litepod-*|v5e-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
    v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
    *) echo "error: unknown ACCELERATOR_TYPE $ACCELERATOR_TYPE; set RUNTIME_VERSION" >&2; exit 2 ;;
  esac
fi
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$REPO_ROOT/$CONFIG" ]] || { echo "error: no config $CONFIG in $REPO_ROOT" >&2; exit 2; }
GCLOUD=(gcloud --project "$PROJECT")
TPU=("${GCLOUD[@]}" compute tpus tpu-vm)
REMOTE_DIR=nafp-jax

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if (( ! DRY_RUN )); then "$@"; fi
}

require_clean_tree() {
  # The workers get `git archive HEAD`: anything not committed would be missing there.
  local dirty
  dirty="$(git -C "$REPO_ROOT" status --porcelain --untracked-files=normal)"
  if [[ -n "$dirty" ]]; then
    echo "error: the working copy has changes that setup would not ship (it sends the committed" >&2
    echo "tree, git archive HEAD); commit or stash them first:" >&2
    echo "$dirty" >&2
    exit 2
  fi
}

on_all_workers() {
  run "${TPU[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"
}

do_create() {
  local spot=()
  [[ "${SPOT:-0}" == 1 ]] && spot=(--spot)
  run "${TPU[@]}" create "$TPU_NAME" --zone "$ZONE" --accelerator-type "$ACCELERATOR_TYPE" \
    --version "$RUNTIME_VERSION" "${spot[@]}"
}

do_setup() {
  # Ship the committed tree (git archive: no caches, no local venv), then install on every worker.
  require_clean_tree
  local archive
  archive="$(mktemp -t nafp-jax-XXXXXX.tar.gz)"
  run git -C "$REPO_ROOT" archive --format=tar.gz -o "$archive" HEAD
  run "${TPU[@]}" scp "$archive" "$TPU_NAME:~/nafp-jax.tar.gz" --zone "$ZONE" --worker=all
  on_all_workers "set -e; rm -rf $REMOTE_DIR; mkdir -p $REMOTE_DIR; tar -xzf ~/nafp-jax.tar.gz -C $REMOTE_DIR; cd $REMOTE_DIR; python3 -m venv .venv; .venv/bin/pip install -q --upgrade pip; .venv/bin/pip install -q -e '.[tpu]'"
  rm -f "$archive"
}

do_train() {
  # Detached (setsid nohup): the run survives the ssh session; rerunning `train` resumes it.
  on_all_workers "cd $REMOTE_DIR && NAFP_CACHE=/tmp/nafp-cache setsid nohup .venv/bin/python -m nafp_jax.main --distributed --config $CONFIG --workdir $WORKDIR --config.data.data_dir=$DATA_DIR $EXTRA_FLAGS > ~/nafp-train.log 2>&1 < /dev/null &"
  echo "training started on every worker; follow it with:"
  printf ' '; printf ' %q' "${TPU[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=0 \
    --command "tail -f ~/nafp-train.log"
  printf '\n'
}

case "$ACTION" in
  create) do_create ;;
  setup) do_setup ;;
  train) do_train ;;
  status) run "${TPU[@]}" describe "$TPU_NAME" --zone "$ZONE" ;;
  delete) run "${TPU[@]}" delete "$TPU_NAME" --zone "$ZONE" --quiet ;;
  all) require_clean_tree; do_create; do_setup; do_train ;;
esac
