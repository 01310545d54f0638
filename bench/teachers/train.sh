#!/usr/bin/env bash
# Trains the panel of teachers made elsewhere than `deno task train-teacher`: LeNet-5 in PyTorch
# (Debian's python3-torch), each with a recipe of its own, saved with PyTorch's parameter names.
#   bash bench/teachers/train.sh DATA_ROOT   # DATA_ROOT holds fashion-mnist/ and mnist/
set -euo pipefail
root=${1:?usage: train.sh DATA_ROOT (a folder holding fashion-mnist/ and mnist/)}
here=$(dirname "$0")
t() { /usr/bin/python3 "$here/../baselines/dfkd_torch.py" teacher "$@"; }
f=$root/fashion-mnist
m=$root/mnist
t --data "$f" --out "$here/fmnist-adam.safetensors" --epochs 15
t --data "$f" --out "$here/fmnist-cosine-shift.safetensors" --epochs 20 --schedule cosine --shift 2
t --data "$f" --out "$here/fmnist-he.safetensors" --epochs 15 --schedule cosine --init he
t --data "$m" --out "$here/mnist-adam.safetensors" --epochs 15
t --data "$m" --out "$here/mnist-cosine-shift.safetensors" --epochs 20 --schedule cosine --shift 2
t --data "$m" --out "$here/mnist-he.safetensors" --epochs 15 --schedule cosine --init he
t --data "$m" --out "$here/mnist-weak.safetensors" --epochs 1 --seed 1
