/**
 * Conv2d throughput on the adapter at hand: forward, backward-to-input and backward-to-weights
 * for the LeNet-5 convolutions and a 16 -> 32 channel 5x5 layer, batch 256.
 *
 * Run: `deno run -A bench/conv2d_speed.ts [seconds per measurement, default 1]`. Prints GFLOP/s
 * with flops = 2·N·O·OH·OW·C·kH·kW per pass, from wall time (after a warm-up, awaiting the GPU)
 * and, since llvmpipe runs on the CPU and the machine may be shared, also from the process's CPU
 * time spread over all cores ("cpu"): the rate the same work would reach with every core free.
 */

import process from "node:process";
import { availableParallelism } from "node:os";

import { conv2d, conv2dBackwardInput, conv2dBackwardWeight } from "../src/ops/conv2d.ts";
import { initGpu, syncGpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";

const ctx = await initGpu();
const seconds = Number(Deno.args[0] ?? 1);
const cores = availableParallelism();

interface Case {
  name: string;
  x: [number, number, number, number];
  o: number;
  k: number;
  padding: number;
}

const cases: Case[] = [
  { name: "LeNet-5 conv1 256x1x32x32 -> 6, 5x5", x: [256, 1, 32, 32], o: 6, k: 5, padding: 0 },
  { name: "LeNet-5 conv2 256x6x14x14 -> 16, 5x5", x: [256, 6, 14, 14], o: 16, k: 5, padding: 0 },
  { name: "256x16x32x32 -> 32, 5x5, pad 2", x: [256, 16, 32, 32], o: 32, k: 5, padding: 2 },
];

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** Milliseconds per call: wall time and process CPU time divided by the core count. */
async function time(f: () => Tensor): Promise<{ wall: number; cpu: number }> {
  const t = performance.now();
  f().dispose(); // warm-up: compiles the pipelines and fills the buffer pool
  await syncGpu();
  const reps = Math.max(3, Math.ceil((seconds * 1000) / (performance.now() - t)));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) f().dispose();
  await syncGpu();
  const wall = (performance.now() - t0) / reps;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 / cores / reps };
}

console.log(`adapter: ${ctx.description}; ${cores} cores; ~${seconds} s per measurement`);
for (const c of cases) {
  const [N, C, H, W] = c.x;
  const OH = H + 2 * c.padding - c.k + 1;
  const OW = W + 2 * c.padding - c.k + 1;
  const wShape = [c.o, C, c.k, c.k];
  const x = Tensor.from(fill(N * C * H * W, 1), c.x);
  const w = Tensor.from(fill(c.o * C * c.k * c.k, 2), wShape);
  const gy = Tensor.from(fill(N * c.o * OH * OW, 3), [N, c.o, OH, OW]);
  const opts = { padding: c.padding };
  const flops = 2 * N * c.o * OH * OW * C * c.k * c.k;
  const row: string[] = [];
  for (
    const [pass, f] of [
      ["forward", () => conv2d(x, w, null, opts)],
      ["backward-input", () => conv2dBackwardInput(gy, w, c.x, opts)],
      ["backward-weight", () => conv2dBackwardWeight(x, gy, wShape, opts)],
    ] as const
  ) {
    const { wall, cpu } = await time(f);
    const rate = (ms: number) => (flops / ms / 1e6).toFixed(2);
    row.push(
      `${pass.padEnd(15)} ${wall.toFixed(1)} ms = ${rate(wall)} GFLOP/s ` +
        `(cpu ${cpu.toFixed(1)} ms = ${rate(cpu)} GFLOP/s)`,
    );
  }
  console.log(`${c.name} (${(flops / 1e9).toFixed(3)} GFLOP per pass)\n  ${row.join("\n  ")}`);
  x.dispose();
  w.dispose();
  gy.dispose();
}
