#!/usr/bin/env bash
# Equal-wall-clock comparison of condensation methods on real CIFAR-10 (issue 4): each method condenses
# the train split to 10 stored images per class (ConvNet-3, DHD, 64 bits, seed 0) within BUDGET seconds
# of distillation, then a fresh network is trained on the set with the evaluation recipe of
# hashcondense/experiments/configs/cifar10_syn10_64.json (500 steps, batch 100) and mAP@5000 is printed.
# Usage: bash bench/cifar_condense.sh BUDGET SPEC...
#   SPEC: random | random_mf | iem | dm | dsa | idc, optionally with "@LR" for another --lr-img (iem@0.05)
#   THREADS=1      each job on one core (two lanes side by side share the machine fairly)
#   SNAPSHOTS="120 300"  also keep the set after these many seconds (resume = the same trajectory) and
#                        evaluate each: the mAP-against-distillation-time curve
#   EVAL_SEEDS="0 1 2"   train the evaluation network of the final set with each of these seeds
#                        (default 0; snapshots use seed 0); the set itself is always condensed with seed 0
# Outputs: bench/out/cond_<spec>_<budget>/ (the set, snap_<s>.safetensors) and
# bench/out/eval_<spec>_<s>/ (evaluation seed 0) or bench/out/eval_<spec>_<s>_seed<N>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${CIFAR10_ROOT:-../shared/data/cifar10}
threads=${THREADS:-2}
budget=$1; shift
hc=.venv/bin/hashcondense
evaluate() {  # set-file run-name
  local seed name
  for seed in ${EVAL_SEEDS:-0}; do
    name=$2; [[ $seed == 0 ]] || name=${2}_seed$seed
    $hc train --config hashcondense/experiments/configs/cifar10_syn10_64.json --root "$root" \
      --train-set "$1" --seed "$seed" --threads "$threads" --quiet --out "bench/out/$name"
    python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], 'mAP@5000 %.2f' % (100*m['map']))" \
      "bench/out/$name/metrics.json" "$name"
  done
}
for spec in "$@"; do
  method=${spec%@*}
  lr=(); [[ $spec == *@* ]] && lr=(--lr-img "${spec#*@}")
  cond=bench/out/cond_${spec}_${budget}
  case $method in
    random) args=(--method random --factor 1) ;;
    random_mf) args=(--method random --factor 2) ;;
    # M = 10 inner steps per pool draw so that a short budget still visits many pool members
    iem) args=(--method iem --inner-loops 10 --outer-loops 100000 --pool-dir bench/out/.pool_cache) ;;
    *) args=(--method "$method") ;;
  esac
  run() {  # time-budget extra-flag...
    $hc condense --dataset cifar10 --root "$root" --ipc 10 --bits 64 --seed 0 --threads "$threads" \
      --time-budget "$1" --quiet --no-images "${args[@]}" "${lr[@]}" "${@:2}" --out "$cond"
  }
  snaps=()
  if [[ $method == random* ]]; then
    run "$budget" --overwrite
  else
    flag=--overwrite
    for s in ${SNAPSHOTS:-}; do
      run "$s" $flag; flag=--resume
      cp "$cond/synthetic.safetensors" "$cond/snap_$s.safetensors"; snaps+=("$s")
    done
    run "$budget" $flag
  fi
  evaluate "$cond/synthetic.safetensors" "eval_${spec}_${budget}"
  # the curve's snapshots: evaluation seed 0 only
  for s in "${snaps[@]}"; do EVAL_SEEDS=0 evaluate "$cond/snap_$s.safetensors" "eval_${spec}_$s"; done
done
