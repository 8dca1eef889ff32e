#!/usr/bin/env bash
# IEM at 10 images per class with the paper's settings (its defaults) under 1- and 3-minute distillation
# budgets (IEM Table 7: 37.13 and 39.65 mAP on a GPU), its model pool trained first (5 members, 20 epochs of
# the 5,000-image split: Acc-DD's early stage, about 400 steps each; cached for the second run), on the CIFAR-10
# train split that bench/make_gpu_check_data.py packs. Writes both sets, their cards (timings) and the
# machine's description under OUT; about 6 minutes on one GPU. The sets are evaluated afterwards on the
# real split, e.g.
#   hashcondense train --dataset cifar10 --root ../shared/data/cifar10 \
#       --train-set OUT/iem10_60s/synthetic.safetensors --bits 64 --out runs/gpu_iem10_60s
#
# usage: bash bench/gpu_check.sh [NPZ] [OUT]
# A CPU smoke test with tiny budgets: BUDGETS="5 10" POOL="--pool-size 1 --pool-epochs 1" bash bench/gpu_check.sh
set -euo pipefail
NPZ=${1:-bench/out/gpu/cifar10_train.npz}
OUT=${2:-${OUT:-bench/out/gpu}/check}
BUDGETS=${BUDGETS:-"60 180"}
POOL=${POOL:-}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
} > "$OUT/machine.txt"
for budget in $BUDGETS; do
  start=$(date +%s)
  # shellcheck disable=SC2086  # POOL holds several flags
  "$PY" -m hashcondense condense --dataset "npz:$NPZ" --method iem --ipc 10 --bits 64 --device auto \
      --time-budget "$budget" --no-images --quiet $POOL --out "$OUT/iem10_${budget}s"
  echo "budget ${budget} s: wall $(( $(date +%s) - start )) s" >> "$OUT/timings.txt"
done
cat "$OUT/machine.txt" "$OUT/timings.txt"
