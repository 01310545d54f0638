#!/usr/bin/env bash
# The panel sweep of synthesis and distillation settings in the PyTorch reference
# (bench/baselines/dfkd_torch_variants.py): every teacher of the panel × every candidate × seeds,
# at a small budget (4,000 samples × 50 iterations, 40 KD epochs). One RESULT line per run.
#   bash bench/teachers/sweep_panel.sh DATA_ROOT "0 1" [CANDIDATE...] > sweep.log
# EPOCHS=0 screens the transfer sets alone (the judge's agreement, no distillation); CACHE=DIR
# keeps transfer sets between candidates that differ only in distillation.
set -euo pipefail
root=${1:?usage: sweep_panel.sh DATA_ROOT [SEEDS] [CANDIDATES...]}
seeds=${2:-0}
shift 2 || shift $#
here=$(dirname "$0")
candidates=("$@")
[ ${#candidates[@]} -gt 0 ] || candidates=(base tv adv tv+adv)
declare -A args=([base]="" [tv]="--tv 0.05" [adv]="--adv-steps 1" [tv+adv]="--tv 0.05 --adv-steps 1"
  [tv0.1+adv]="--tv 0.1 --adv-steps 1" [adv2]="--adv-steps 2" [tv+adv2]="--tv 0.05 --adv-steps 2"
  [smooth+adv]="--smooth 1 --adv-steps 1" [tv+jitter+adv]="--tv 0.05 --jitter 2 --adv-steps 1"
  [tv+smooth+adv]="--tv 0.05 --smooth 1 --adv-steps 1"
  [tv+adv+bal]="--tv 0.05 --adv-steps 1 --balance 1" [tv+adv+kdtau4]="--tv 0.05 --adv-steps 1 --kd-tau 4" [tv+adv+kdtau8]="--tv 0.05 --adv-steps 1 --kd-tau 8"
  [tv+adv+roll2+flip]="--tv 0.05 --adv-steps 1 --image-roll 2 --synth-flip 1"
  [tv+adv+roll2]="--tv 0.05 --adv-steps 1 --image-roll 2"
  [tv+ij2]="--tv 0.05 --image-jitter 2" [tv+ij2+flip]="--tv 0.05 --image-jitter 2 --synth-flip 1"
  [tv+roll2+flip]="--tv 0.05 --image-roll 2 --synth-flip 1" [tv+lowres16]="--tv 0.05 --lowres 16"
  [tv+l1]="--tv 0.05 --l1 0.05"
  [tv+adv+it100]="--tv 0.05 --adv-steps 1 --iterations 100"
  [tv+adv+noaug]="--tv 0.05 --adv-steps 1 --shift 0 --flip 0"
  [tv+adv+it100+noaug]="--tv 0.05 --adv-steps 1 --iterations 100 --shift 0 --flip 0"
  [tv+adv+s8000-e20]="--tv 0.05 --adv-steps 1 --samples 8000 --epochs 20"
  [tv+adv+s16000-e10]="--tv 0.05 --adv-steps 1 --samples 16000 --epochs 10"
  [tv+adv+s8000-e20+it25]="--tv 0.05 --adv-steps 1 --samples 8000 --epochs 20 --iterations 25")
# A dark start (initial noise U(0, b)) at 100 iterations, and what goes on top of it.
it100="--tv 0.05 --adv-steps 1 --iterations 100"
for b in 0.02 0.05 0.1 0.2 0.3; do args[it100+dark$b]="$it100 --init dark --init-max $b"; done
dark="$it100 --init dark --init-max 0.1"
args+=([it100+dark+lowres16]="$dark --lowres 16" [it100+dark+roll2+flip]="$dark --image-roll 2 --synth-flip 1"
  [it100+dark+ij2+flip]="$dark --image-jitter 2 --synth-flip 1" [it100+dark+tv0.1]="$dark --tv 0.1"
  [it100+dark+smooth1]="$dark --smooth 1" [it100+dark+l1]="$dark --l1 0.05" [it100+l1]="$it100 --l1 0.05")
default=(fmnist-adam fmnist-he fmnist-cosine-shift ../../examples/teachers/lenet5-fashion-mnist
  mnist-adam mnist-he mnist-cosine-shift ../../examples/teachers/lenet5-mnist mnist-weak)
read -r -a teachers <<< "${TEACHERS:-${default[*]}}"  # TEACHERS="a b" picks some; THREADS=1 on a busy machine
for seed in $seeds; do
  for c in "${candidates[@]}"; do
    for t in "${teachers[@]}"; do
      if [[ $t == *fashion* || $t == fmnist-* ]]; then
        data=$root/fashion-mnist flip=1 judge=fmnist-he; [ "$t" = fmnist-he ] && judge=fmnist-adam
      else
        data=$root/mnist flip=0 judge=mnist-cosine-shift; [ "$t" = mnist-cosine-shift ] && judge=mnist-adam
      fi
      /usr/bin/python3 "$here/../baselines/dfkd_torch_variants.py" distill \
        --teacher "$here/$t.safetensors" --data "$data" --judge "$here/$judge.safetensors" \
        --samples 4000 --epochs "${EPOCHS:-40}" --flip $flip ${CACHE:+--cache "$CACHE"} --seed "$seed" --tag "$(basename "$t"):$c" --threads "${THREADS:-2}" \
        ${args[$c]} | grep RESULT
    done
  done
done
