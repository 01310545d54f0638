/**
 * Matmul throughput: `deno run -A bench/matmul_speed.ts [--quick]`.
 *
 * Times 1024³ matmuls in every layout for both strategies and the LeNet-5 fully connected shapes
 * at batch 256 (forward x·Wᵀ, dx = gy·W, dW = gyᵀ·x), and prints GFLOP/s. Each case is warmed
 * up (pipeline compile), then timed as the best of several rounds; a round queues enough
 * matmuls for ~0.2 s of work and waits once with `syncGpu`, so the ~11 ms readback latency is
 * amortised.
 *
 * Two numbers per case: `wall` (FLOPs / elapsed time) and, on software adapters, `cpu-adj`
 * (FLOPs / (process CPU time / cores)): llvmpipe runs the kernels on this process's threads, so
 * the second is what the wall figure would be with every core to ourselves. On a shared machine
 * the wall figure drops with other load; `cpu-adj` stays within ~15%.
 *
 * Plain script (not `deno bench`): it does nothing when imported.
 *
 * @module
 */

import process from "node:process";
import { gpuContext, initGpu, syncGpu } from "../src/gpu/runtime.ts";
import { matmul, type MatmulStrategy } from "../src/ops/matmul.ts";
import { Tensor } from "../src/tensor.ts";

interface Case {
  label: string;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  bias?: boolean;
}

function random(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Best wall and CPU-adjusted GFLOP/s over `rounds` rounds of `strategy` on `c`. */
async function measure(
  c: Case,
  strategy: MatmulStrategy,
  rounds: number,
): Promise<[number, number]> {
  const a = Tensor.from(random(c.m * c.k), c.transA ? [c.k, c.m] : [c.m, c.k]);
  const b = Tensor.from(random(c.k * c.n), c.transB ? [c.n, c.k] : [c.k, c.n]);
  const bias = c.bias ? Tensor.from(random(c.n)) : null;
  const opts = { transA: c.transA, transB: c.transB, bias, strategy };
  const flops = 2 * c.m * c.n * c.k;
  matmul(a, b, opts).dispose(); // compile and warm up
  await syncGpu();
  // Queue enough matmuls per round for ~0.2 s at 10 GFLOP/s.
  const perRound = Math.max(1, Math.min(500, Math.round(2e9 / flops)));
  const cores = navigator.hardwareConcurrency || 1;
  let best = Infinity;
  let bestCpu = Infinity;
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < perRound; i++) matmul(a, b, opts).dispose();
    await syncGpu();
    best = Math.min(best, (performance.now() - t0) / perRound);
    const cpu = process.cpuUsage(c0);
    bestCpu = Math.min(bestCpu, (cpu.user + cpu.system) / 1000 / cores / perRound);
  }
  for (const t of [a, b, bias]) t?.dispose();
  return [flops / best / 1e6, flops / bestCpu / 1e6];
}

const big: Case[] = [
  { label: "1024³ A·B", m: 1024, n: 1024, k: 1024, transA: false, transB: false },
  { label: "1024³ Aᵀ·B", m: 1024, n: 1024, k: 1024, transA: true, transB: false },
  { label: "1024³ A·Bᵀ", m: 1024, n: 1024, k: 1024, transA: false, transB: true },
  { label: "1024³ Aᵀ·Bᵀ", m: 1024, n: 1024, k: 1024, transA: true, transB: true },
];
// LeNet-5 fully connected layers at batch 256: x·Wᵀ + b, dx = gy·W, dW = gyᵀ·x.
const lenet: Case[] = [];
for (const [inF, outF] of [[400, 120], [120, 84], [84, 10]]) {
  lenet.push(
    {
      label: `[256,${inF}]·[${outF},${inF}]ᵀ+b`,
      m: 256,
      n: outF,
      k: inF,
      transA: false,
      transB: true,
      bias: true,
    },
    {
      label: `[256,${outF}]·[${outF},${inF}]`,
      m: 256,
      n: inF,
      k: outF,
      transA: false,
      transB: false,
    },
    { label: `[256,${outF}]ᵀ·[256,${inF}]`, m: outF, n: inF, k: 256, transA: true, transB: false },
  );
}

async function main(): Promise<void> {
  const quick = Deno.args.includes("--quick");
  await initGpu();
  const soft = gpuContext().isFallbackAdapter;
  console.log(`adapter: ${gpuContext().description}`);
  for (const strategy of ["register", "tiled"] as const) {
    // The tiled kernel is slow on llvmpipe: fewer rounds and only the first large layout.
    const slow = strategy === "tiled" && soft;
    const cases = [...(slow ? big.slice(0, 1) : big), ...lenet];
    for (const c of cases) {
      const rounds = quick || slow ? 2 : 5;
      const [wall, adj] = await measure(c, strategy, rounds);
      const extra = soft ? `   cpu-adj ${adj.toFixed(2).padStart(6)}` : "";
      console.log(
        `${c.label.padEnd(28)} ${strategy.padEnd(9)} wall ${wall.toFixed(2).padStart(6)}${extra}` +
          " GFLOP/s",
      );
    }
  }
}

if (import.meta.main) await main();
