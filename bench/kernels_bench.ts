/**
 * Our hand-written kernels against TensorFlow.js's WebGPU backend, on the same adapter in the
 * same process: one `Deno.bench` group per op and shape (see `cases.ts`), TF.js marked
 * `baseline: true`.
 *
 * Fairness rules:
 * - both sides get the same input values (TF.js in its native NHWC / HWIO layouts, transposed once
 *   outside the timed loop) and TF.js's default kernel choices;
 * - each op runs once untimed first (pipeline compilation, TF.js's lazy upload) and its result is
 *   verified: ours against a float64 host reference on sampled elements (a miss fails the run),
 *   then ours against TF.js on every element; where they differ the reference decides, and a
 *   wrong TF.js result is recorded for the report (its time is still reported);
 * - then `Deno.bench`'s own warm-up and the timed iterations between `b.start()` and `b.end()`:
 *   one queues the op `reps` times, disposing every output right after queuing it, and then
 *   waits for the adapter without a readback: ours `await syncGpu()`, TF.js `await tfSync()`
 *   (submit its pending encoder, then `queue.onSubmittedWorkDone()`);
 * - where TF.js needs seconds per op (`tfjsOnce` in `cases.ts`) it is compiled on a batch-1 copy
 *   and timed on one full-size run instead, reported through `$BENCH_STATS_FILE`.
 *
 * Run with `deno bench -A bench/kernels_bench.ts`; `deno run -A bench/report.ts` turns the
 * times into GFLOP/s or GB/s.
 *
 * @module
 */

import { initGpu, syncGpu } from "../src/gpu/runtime.ts";
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight } from "../src/ops/conv2d.ts";
import { klDivLoss } from "../src/ops/loss.ts";
import { defaultMatmulStrategy, matmul, type MatmulStrategy } from "../src/ops/matmul.ts";
import { maxPool2d } from "../src/ops/pool.ts";
import { softmax } from "../src/ops/softmax.ts";
import { Rng } from "../src/random.ts";
import { Tensor } from "../src/tensor.ts";
import {
  type CaseSpec,
  KERNEL_CASES,
  type KernelCase,
  type KernelSideInfo,
  NAMES,
} from "./cases.ts";
import { initTfWebGpu, tf, tfSync } from "./tfjs.ts";

const ctx = await initGpu();
await initTfWebGpu(ctx);

/** One implementation of one case, with its inputs already on the adapter. */
interface Impl {
  /** Queues the op once and disposes its outputs (no waiting). */
  step(): void;
  /**
   * Runs the op once, waits for the adapter (timed, no readback), then reads its main output
   * back in our layout (NCHW, OIHW).
   */
  result(): Promise<{ ms: number; data: Float32Array }>;
  /** Frees the inputs. */
  dispose(): void;
}

/** The inputs of a case as host arrays in our layouts, drawn once per case. */
interface HostInputs {
  [name: string]: { data: Float32Array; shape: number[] };
}

function normal(rng: Rng, shape: number[], std = 1): { data: Float32Array; shape: number[] } {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  rng.fillNormal(data, 0, std);
  return { data, shape };
}

/** Row-wise softmax on the host (targets of the KL case: strictly positive rows summing to 1). */
function hostSoftmax(z: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(z.length);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, z[r * cols + c]);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += out[r * cols + c] = Math.exp(z[r * cols + c] - max);
    for (let c = 0; c < cols; c++) out[r * cols + c] /= sum;
  }
  return out;
}

/** Permutes a 4-D row-major array: `out[idx permuted by perm] = data[idx]`, output dims `shape[perm]`. */
function permute4(
  data: Float32Array,
  shape: readonly number[],
  perm: readonly number[],
): Float32Array {
  const out = new Float32Array(data.length);
  const outShape = perm.map((p) => shape[p]);
  const inStride = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  const s = perm.map((p) => inStride[p]);
  let o = 0;
  for (let a = 0; a < outShape[0]; a++) {
    for (let b = 0; b < outShape[1]; b++) {
      for (let c = 0; c < outShape[2]; c++) {
        for (let d = 0; d < outShape[3]; d++) {
          out[o++] = data[a * s[0] + b * s[1] + c * s[2] + d * s[3]];
        }
      }
    }
  }
  return out;
}

const NCHW_TO_NHWC = [0, 2, 3, 1];
const NHWC_TO_NCHW = [0, 3, 1, 2];
const OIHW_TO_HWIO = [2, 3, 1, 0];
const HWIO_TO_OIHW = [3, 2, 0, 1];

function hostInputs(spec: CaseSpec, rng: Rng): HostInputs {
  switch (spec.kind) {
    case "matmul":
      return {
        a: normal(rng, [spec.m, spec.k]),
        b: normal(rng, spec.transB ? [spec.n, spec.k] : [spec.k, spec.n]),
        bias: normal(rng, [spec.n]),
      };
    case "conv2d":
    case "conv2dBackwardInput":
    case "conv2dBackwardWeight": {
      const o = spec.size + 2 * spec.padding - spec.kernel + 1;
      return {
        x: normal(rng, [spec.batch, spec.inC, spec.size, spec.size]),
        w: normal(rng, [spec.outC, spec.inC, spec.kernel, spec.kernel], 0.1),
        bias: normal(rng, [spec.outC]),
        gy: normal(rng, [spec.batch, spec.outC, o, o]),
      };
    }
    case "maxPool2d":
      return { x: normal(rng, [spec.batch, spec.c, spec.size, spec.size]) };
    case "softmax":
      return { z: normal(rng, [spec.rows, spec.cols], 3) };
    case "klDivLoss": {
      const t = normal(rng, [spec.rows, spec.cols], 30);
      return {
        p: { data: hostSoftmax(t.data, spec.rows, spec.cols), shape: t.shape },
        z: normal(rng, [spec.rows, spec.cols], 30),
      };
    }
  }
}

function ours(spec: CaseSpec, host: HostInputs, strategy?: MatmulStrategy): Impl {
  const t: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(host)) t[k] = Tensor.from(v.data, v.shape);
  let run: () => { main: Tensor; rest: Tensor[] };
  switch (spec.kind) {
    case "matmul":
      run = () => ({
        main: matmul(t.a, t.b, {
          transB: spec.transB,
          bias: spec.bias ? t.bias : null,
          strategy,
        }),
        rest: [],
      });
      break;
    case "conv2d":
      run = () => ({
        main: conv2d(t.x, t.w, t.bias, { stride: 1, padding: spec.padding }),
        rest: [],
      });
      break;
    case "conv2dBackwardInput":
      run = () => ({
        main: conv2dBackwardInput(t.gy, t.w, t.x.shape, { stride: 1, padding: spec.padding }),
        rest: [],
      });
      break;
    case "conv2dBackwardWeight":
      run = () => ({
        main: conv2dBackwardWeight(t.x, t.gy, t.w.shape, { stride: 1, padding: spec.padding }),
        rest: [],
      });
      break;
    case "maxPool2d":
      run = () => {
        const { y, argmax } = maxPool2d(t.x, { kernelSize: 2, stride: 2 });
        return { main: y, rest: [argmax] };
      };
      break;
    case "softmax":
      run = () => ({ main: softmax(t.z, 1), rest: [] });
      break;
    case "klDivLoss":
      run = () => {
        const { loss, grad } = klDivLoss(t.p, t.z, spec.tau);
        return { main: grad, rest: [loss] };
      };
      break;
  }
  return {
    step() {
      const { main, rest } = run();
      main.dispose();
      for (const r of rest) r.dispose();
    },
    async result() {
      const t0 = performance.now();
      const { main, rest } = run();
      await syncGpu();
      const ms = performance.now() - t0;
      for (const r of rest) r.dispose();
      const data = await main.read();
      main.dispose();
      return { ms, data };
    },
    dispose() {
      for (const x of Object.values(t)) x.dispose();
    },
  };
}

function theirs(spec: CaseSpec, host: HostInputs): Impl {
  const t: Record<string, tf.Tensor> = {};
  const conv = spec.kind.startsWith("conv2d") || spec.kind === "maxPool2d";
  for (const [k, v] of Object.entries(host)) {
    if (conv && v.shape.length === 4) {
      const perm = k === "w" ? OIHW_TO_HWIO : NCHW_TO_NHWC;
      t[k] = tf.tensor(permute4(v.data, v.shape, perm), perm.map((p) => v.shape[p]));
    } else {
      t[k] = tf.tensor(v.data, v.shape);
    }
  }
  /** Converts the main output back to our layout. */
  let back = (data: Float32Array, _shape: number[]): Float32Array => data;
  let run: () => tf.Tensor[];
  switch (spec.kind) {
    case "matmul":
      run = () => [
        spec.bias
          ? tf.fused.matMul({ a: t.a, b: t.b, transposeB: spec.transB, bias: t.bias })
          : tf.matMul(t.a, t.b, false, spec.transB),
      ];
      break;
    case "conv2d":
      run = () => [
        tf.fused.conv2d({
          x: t.x as tf.Tensor4D,
          filter: t.w as tf.Tensor4D,
          strides: 1,
          pad: spec.padding,
          bias: t.bias,
        }),
      ];
      back = (d, s) => permute4(d, s, NHWC_TO_NCHW);
      break;
    case "conv2dBackwardInput":
      run = () => [
        tf.conv2dTranspose(
          t.gy as tf.Tensor4D,
          t.w as tf.Tensor4D,
          t.x.shape as [number, number, number, number],
          1,
          spec.padding,
        ),
      ];
      back = (d, s) => permute4(d, s, NHWC_TO_NCHW);
      break;
    case "conv2dBackwardWeight":
      run = () => [
        tf.engine().runKernel("Conv2DBackpropFilter", { x: t.x, dy: t.gy }, {
          strides: [1, 1],
          pad: spec.padding,
          dataFormat: "NHWC",
          filterShape: t.w.shape,
        }) as tf.Tensor,
      ];
      back = (d, s) => permute4(d, s, HWIO_TO_OIHW);
      break;
    case "maxPool2d":
      run = () => {
        const { result, indexes } = tf.maxPoolWithArgmax(t.x as tf.Tensor4D, 2, 2, "valid");
        return [result, indexes];
      };
      back = (d, s) => permute4(d, s, NHWC_TO_NCHW);
      break;
    case "softmax":
      run = () => [tf.softmax(t.z)];
      break;
    case "klDivLoss": {
      // The fewest TF.js kernels for loss = mean_n Σ p·(log p − log q) and
      // grad = (q − p)/(N·τ), q = softmax(z/τ); targets are strictly positive.
      const invTau = tf.scalar(1 / spec.tau);
      const invN = tf.scalar(1 / spec.rows);
      const gradScale = tf.scalar(1 / (spec.rows * spec.tau));
      run = () =>
        tf.tidy(() => {
          const q = tf.softmax(tf.mul(t.z, invTau));
          const loss = tf.mul(tf.sum(tf.mul(t.p, tf.sub(tf.log(t.p), tf.log(q)))), invN);
          const grad = tf.mul(tf.sub(q, t.p), gradScale);
          return [grad, loss];
        });
      break;
    }
  }
  return {
    step() {
      for (const y of run()) y.dispose();
    },
    async result() {
      const t0 = performance.now();
      const [main, ...rest] = run();
      await tfSync();
      const ms = performance.now() - t0;
      for (const r of rest) r.dispose();
      const data = await main.data() as Float32Array;
      const shape = main.shape;
      main.dispose();
      return { ms, data: back(Float32Array.from(data), shape) };
    },
    dispose() {
      for (const x of Object.values(t)) x.dispose();
    },
  };
}

/**
 * A float64 host reference for output element `i` (our layout) of a case: the arbiter when ours
 * and TF.js disagree.
 */
function reference(spec: CaseSpec, h: HostInputs, i: number): number {
  switch (spec.kind) {
    case "matmul": {
      const { k, n, transB } = spec;
      const [r, c] = [Math.floor(i / n), i % n];
      let s = spec.bias ? h.bias.data[c] : 0;
      for (let q = 0; q < k; q++) {
        s += h.a.data[r * k + q] * h.b.data[transB ? c * k + q : q * n + c];
      }
      return s;
    }
    case "conv2d":
    case "conv2dBackwardInput":
    case "conv2dBackwardWeight": {
      const { batch: N, inC: C, size: H, outC: O, kernel: K, padding: P } = spec;
      const OH = H + 2 * P - K + 1;
      const x = (n: number, c: number, y: number, xx: number) =>
        y < 0 || xx < 0 || y >= H || xx >= H ? 0 : h.x.data[((n * C + c) * H + y) * H + xx];
      const gy = (n: number, o: number, y: number, xx: number) =>
        y < 0 || xx < 0 || y >= OH || xx >= OH ? 0 : h.gy.data[((n * O + o) * OH + y) * OH + xx];
      const w = (o: number, c: number, a: number, b: number) =>
        h.w.data[((o * C + c) * K + a) * K + b];
      let s = 0;
      if (spec.kind === "conv2d") {
        const [n, o, y, xx] = unravel(i, [N, O, OH, OH]);
        s = h.bias.data[o];
        for (let c = 0; c < C; c++) {
          for (let a = 0; a < K; a++) {
            for (let b = 0; b < K; b++) s += x(n, c, y + a - P, xx + b - P) * w(o, c, a, b);
          }
        }
      } else if (spec.kind === "conv2dBackwardInput") {
        const [n, c, y, xx] = unravel(i, [N, C, H, H]);
        for (let o = 0; o < O; o++) {
          for (let a = 0; a < K; a++) {
            for (let b = 0; b < K; b++) s += gy(n, o, y - a + P, xx - b + P) * w(o, c, a, b);
          }
        }
      } else {
        const [o, c, a, b] = unravel(i, [O, C, K, K]);
        for (let n = 0; n < N; n++) {
          for (let y = 0; y < OH; y++) {
            for (let xx = 0; xx < OH; xx++) s += gy(n, o, y, xx) * x(n, c, y + a - P, xx + b - P);
          }
        }
      }
      return s;
    }
    case "maxPool2d": {
      const { batch: N, c: C, size: H } = spec;
      const [n, c, y, xx] = unravel(i, [N, C, H / 2, H / 2]);
      let m = -Infinity;
      for (let a = 0; a < 2; a++) {
        for (let b = 0; b < 2; b++) {
          m = Math.max(m, h.x.data[((n * C + c) * H + 2 * y + a) * H + 2 * xx + b]);
        }
      }
      return m;
    }
    case "softmax":
    case "klDivLoss": {
      const { rows, cols } = spec;
      const tau = spec.kind === "klDivLoss" ? spec.tau : 1;
      const [r, c] = [Math.floor(i / cols), i % cols];
      const z = h.z.data.subarray(r * cols, (r + 1) * cols);
      const max = Math.max(...z);
      let sum = 0;
      for (const v of z) sum += Math.exp((v - max) / tau);
      const q = Math.exp((z[c] - max) / tau) / sum;
      return spec.kind === "softmax" ? q : (q - h.p.data[i]) / (rows * tau);
    }
  }
}

function unravel(i: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return out;
}

/** Largest |a − b| over all elements, where it occurs, and the largest |b|. */
function compare(a: Float32Array, b: Float32Array): { err: number; at: number; scale: number } {
  let err = 0;
  let at = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= err)) [err, at] = [e, i];
  }
  return { err, at, scale };
}

/** Relative tolerance (of the largest magnitude) for f32 results against each other. */
const REL_TOL = 2e-3;

/**
 * Checks `got` against the host reference at 64 spread-out elements plus `extra`.
 * Returns a description of the worst miss, or null when all are within tolerance.
 */
function checkSamples(
  spec: CaseSpec,
  host: HostInputs,
  got: Float32Array,
  extra: number[],
): string | null {
  const idx = [...extra];
  for (let j = 0; j < 64; j++) idx.push(Math.floor((j * 0.618034 % 1) * got.length));
  const ref = Float64Array.from(idx, (i) => reference(spec, host, i));
  const scale = Math.max(...ref.map(Math.abs), 1e-6);
  let worst: string | null = null;
  let worstErr = REL_TOL * scale;
  idx.forEach((i, j) => {
    const e = Math.abs(got[i] - ref[j]);
    if (!(e <= worstErr)) {
      worstErr = e;
      worst = `element ${i}: ${got[i].toPrecision(6)} vs reference ${ref[j].toPrecision(6)} ` +
        `(largest |reference| ${scale.toPrecision(4)})`;
    }
  });
  return worst;
}

/**
 * What the report needs besides `deno bench`'s JSON, written to `$BENCH_STATS_FILE` when set:
 * cases where TF.js's result was wrong, and TF.js's single-run times of `tfjsOnce` cases.
 */
const side: KernelSideInfo = { notes: {}, tfjsOnceMs: {} };
const sideFile = Deno.env.get("BENCH_STATS_FILE");

async function saveSide(): Promise<void> {
  if (sideFile) await Deno.writeTextFile(sideFile, JSON.stringify(side, null, 2));
}

/**
 * Verifies ours against the host reference (throws if wrong), then ours against TF.js on every
 * element; where they disagree, the host reference decides: a wrong TF.js result is noted (its
 * time is still reported, the loop it runs is the same), anything else throws.
 */
async function verify(
  group: string,
  spec: CaseSpec,
  host: HostInputs,
  ours: Float32Array,
  tfjs: Float32Array,
) {
  if (ours.length !== tfjs.length) {
    throw new Error(`${group}: ours has ${ours.length} values, TF.js ${tfjs.length}`);
  }
  const { err, at, scale } = compare(ours, tfjs);
  const oursMiss = checkSamples(spec, host, ours, [at]);
  if (oursMiss) throw new Error(`${group}: our result is wrong at ${oursMiss}`);
  if (err <= REL_TOL * Math.max(scale, 1e-6)) return;
  const tfMiss = checkSamples(spec, host, tfjs, [at]);
  if (!tfMiss) {
    throw new Error(
      `${group}: ours and TF.js disagree at element ${at} (ours ${ours[at]}, TF.js ${tfjs[at]}) ` +
        "and the sampled reference could not tell which is wrong",
    );
  }
  side.notes[group] = `TF.js result wrong on this adapter: ${tfMiss}`;
  console.error(`warning: ${group}: ${side.notes[group]}; ours matches the reference`);
  await saveSide();
}

interface Prepared {
  ours: Impl;
  alt?: Impl;
  /** Absent for `tfjsOnce` cases once their single run is done. */
  tfjs?: Impl;
}

const prepared = new Map<string, Promise<Prepared>>();

/** The same case at batch 1: compiles TF.js's pipeline (keyed by ranks, not sizes) cheaply. */
function tiny(spec: CaseSpec): CaseSpec {
  return "batch" in spec ? { ...spec, batch: 1 } : spec;
}

/**
 * Builds both sides of a case once, runs each once untimed (pipeline compilation, uploads) and
 * verifies them. For a `tfjsOnce` case, TF.js is compiled on a batch-1 copy and then run exactly
 * once at full size, timed by hand; that time goes to the side file instead of `Deno.bench`.
 */
function prepare(c: KernelCase, altStrategy: MatmulStrategy): Promise<Prepared> {
  let p = prepared.get(c.group);
  if (!p) {
    p = (async () => {
      const host = hostInputs(c.spec, new Rng(1234).fork(c.group));
      const pair: Prepared = {
        ours: ours(c.spec, host),
        alt: c.bothStrategies ? ours(c.spec, host, altStrategy) : undefined,
        tfjs: theirs(c.spec, host),
      };
      if (c.tfjsOnce) {
        const small = theirs(tiny(c.spec), hostInputs(tiny(c.spec), new Rng(1)));
        await small.result();
        small.dispose();
      }
      const { ms, data: ref } = await pair.tfjs!.result();
      if (c.tfjsOnce) {
        side.tfjsOnceMs[c.group] = ms;
        await saveSide();
        console.error(`${c.group}: TF.js timed once (too slow to repeat): ${ms.toFixed(0)} ms`);
        pair.tfjs!.dispose();
        pair.tfjs = undefined;
      }
      await verify(c.group, c.spec, host, (await pair.ours.result()).data, ref);
      if (pair.alt) {
        await verify(
          `${c.group} (${altStrategy})`,
          c.spec,
          host,
          (await pair.alt.result()).data,
          ref,
        );
      }
      return pair;
    })();
    prepared.set(c.group, p);
  }
  return p;
}

const strategy = defaultMatmulStrategy();
const altStrategy: MatmulStrategy = strategy === "register" ? "tiled" : "register";

for (const c of KERNEL_CASES) {
  const common = { group: c.group, n: c.n, warmup: c.warmup };
  const timed =
    (pick: (p: Prepared) => Impl, sync: () => Promise<void>) => async (b: Deno.BenchContext) => {
      const impl = pick(await prepare(c, altStrategy));
      b.start();
      for (let r = 0; r < c.reps; r++) impl.step();
      await sync();
      b.end();
    };
  Deno.bench({ ...common, name: NAMES.ours, fn: timed((p) => p.ours, syncGpu) });
  if (c.bothStrategies) {
    Deno.bench({ ...common, name: NAMES.oursAlt(altStrategy), fn: timed((p) => p.alt!, syncGpu) });
  }
  if (!c.tfjsOnce) {
    Deno.bench({ ...common, name: NAMES.tfjs, baseline: true, fn: timed((p) => p.tfjs!, tfSync) });
  }
}
