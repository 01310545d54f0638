#!/usr/bin/env bash
# One prepared check on a machine with an NVIDIA GPU: installs what Deno's WebGPU needs there,
# runs the bench suite, a default run and a paper-scale synthesis, and writes one JSON of figures.
#
#   bash bench/gpu.sh [OUT_DIR] [DATA_ROOT]
#
# OUT_DIR (default ./gpu-results) receives gpu.json, the bench report and the runs' metrics.
# DATA_ROOT holds fashion-mnist/ (IDX files; default ../shared/data, then the standard places).
# Deno: `deno` on PATH, else ./deno.gz or ./deno (a copied binary) in the repository root.
# Needs root for apt (Debian/Ubuntu); the NVIDIA driver itself must already be installed.
# SMOKE=1 runs every step at toy size (no bench) to check the script on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu-results}")
data=${2:-../shared/data}
mkdir -p "$out"

if ! command -v deno >/dev/null; then
  mkdir -p .gpu-bin
  if [ -f deno.gz ]; then gunzip -c deno.gz > .gpu-bin/deno; elif [ -f deno ]; then cp deno .gpu-bin/; fi
  chmod +x .gpu-bin/deno 2>/dev/null || { echo "no deno on PATH, ./deno.gz or ./deno" >&2; exit 2; }
  export PATH="$PWD/.gpu-bin:$PATH"
fi
# The Vulkan loader and libglvnd (NVIDIA's Vulkan driver loads through them), only where an NVIDIA
# driver is present and the loader is not, and without Mesa's software Vulkan driver (a
# recommendation of libvulkan1) so that a machine without a GPU keeps its adapter.
if command -v nvidia-smi >/dev/null && command -v apt-get >/dev/null &&
  ! ldconfig -p | grep -q libvulkan.so.1; then
  apt-get install -y -qq --no-install-recommends libvulkan1 libglvnd0 libglx0 libgl1 libegl1 \
    libgles2 libopengl0 >/dev/null 2>&1 || echo "warning: apt could not install the Vulkan loader" >&2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" ||
  echo "no nvidia-smi" > "$out/gpu.txt"

fm="$data/fashion-mnist"
teacher=examples/teachers/lenet5-fashion-mnist.safetensors
step() { echo "== $*" >&2; }
# timed FILE CMD...: runs CMD, writes its wall seconds to FILE
timed() {
  local f=$1 t0 rc=0; shift; t0=$(date +%s.%N); "$@" || rc=$?
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }' > "$f"; return $rc
}
small=() paper_small=()
if [ "${SMOKE:-0}" = 1 ]; then
  small=(--samples 40 --iterations 2 --student-epochs 1)
  paper_small=(--samples 40 --iterations 3)
else
  step "bench report"
  deno task bench:report > "$out/bench-report.md" 2> "$out/bench-report.log" || echo "bench failed" >&2
fi
cp bench/results/*.json "$out/" 2>/dev/null || true
step "default run"
timed "$out/default.seconds" deno task synth --teacher "$teacher" --data "$fm" --out "$out/default" --force "${small[@]}" \
  > "$out/default.log" 2>&1 || echo "default run failed" >&2
step "paper-scale synthesis (48,000 images × 1,500 iterations, synthesis only)"
timed "$out/paper.seconds" deno task synth --teacher "$teacher" --data "$fm" --preset paper --shard 0/1 \
  --out "$out/paper-synthesis" --force "${paper_small[@]}" > "$out/paper.log" 2>&1 ||
  echo "paper synthesis failed" >&2

deno eval --ext=ts "
const out = '$out';
const read = (p: string) => { try { return Deno.readTextFileSync(p).trim(); } catch { return null; } };
const json = (p: string) => { const t = read(p); return t ? JSON.parse(t) : null; };
const m = json(out + '/default/metrics.json');
const paper = json(out + '/paper-synthesis/run.json');
const figures = {
  gpu: read(out + '/gpu.txt'),
  default_run: m && {
    wall_seconds: Number(read(out + '/default.seconds')),
    synthesis_throughput: m.synthesis_throughput,
    distillation_throughput: m.distillation_throughput,
    student_test_accuracy: m.student_test_accuracy,
    teacher_test_accuracy: m.teacher_test_accuracy,
    transfer_set_stats: m.transfer_set_stats,
  },
  paper_synthesis: {
    wall_seconds: Number(read(out + '/paper.seconds')),
    batch_size: paper?.synthesis_batch_size ?? null,
    finished: read(out + '/paper-synthesis/shard.json') !== null,
  },
};
Deno.writeTextFileSync(out + '/gpu.json', JSON.stringify(figures, null, 2) + '\n');
console.log(JSON.stringify(figures, null, 2));
"
