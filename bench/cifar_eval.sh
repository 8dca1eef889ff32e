#!/usr/bin/env bash
# Evaluation-recipe benchmarks on real CIFAR-10 (the JPEG copy in ../shared/data): one paper experiment
# = one config + one command. Runs the given configs in turn (default: all four) and prints each mAP.
# Usage: bash bench/cifar_eval.sh [config-name ...]   (results: bench/out/<name>/metrics.json)
# The whole-split runs take hours on a CPU; rerunning the script continues them from their checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${CIFAR10_ROOT:-../shared/data/cifar10}
names=${*:-cifar10_whole_64 cifar10_random10_64 cifar10_random50_64 cifar10_whole_32}
for name in $names; do
  extra=()
  case $name in *whole*) extra=(--eval-epochs 25,50,75) ;; esac
  .venv/bin/hashcondense train --config "hashcondense/experiments/configs/$name.json" --root "$root" \
    --quiet --resume --out "bench/out/$name" "${extra[@]}"  # --resume: continue an interrupted run
done
