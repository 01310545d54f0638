/**
 * The kernel benchmark cases: one `Deno.bench` group each, shared by `kernels_bench.ts` (which
 * times them) and `report.ts` (which turns the times into GFLOP/s or GB/s).
 *
 * Work per op: matmul and convolution count `2·M·N·K` floating-point operations (one multiply and
 * one add per MAC; the three conv passes have the same MAC count); the memory-bound ops count the
 * bytes an ideal kernel must move (every input read once, every output written once, f32/i32).
 *
 * Ops too small to outlast the ~11 ms that any wait for the adapter costs here are queued `reps`
 * times per timed iteration and waited for once; the report divides by `reps`.
 *
 * @module
 */

/** Throughput unit of a case. */
export type Unit = "GFLOP/s" | "GB/s";

/** What a case computes, in the terms both implementations take. */
export type CaseSpec =
  | {
    kind: "matmul";
    m: number;
    n: number;
    k: number;
    /** B is stored `[N, K]` (a fully connected layer's weight) and used transposed. */
    transB: boolean;
    bias: boolean;
  }
  | {
    kind: "conv2d" | "conv2dBackwardInput" | "conv2dBackwardWeight";
    batch: number;
    inC: number;
    size: number;
    outC: number;
    kernel: number;
    padding: number;
    bias: boolean;
  }
  | { kind: "maxPool2d"; batch: number; c: number; size: number }
  | { kind: "softmax"; rows: number; cols: number }
  | { kind: "klDivLoss"; rows: number; cols: number; tau: number };

/** One benchmark group. */
export interface KernelCase {
  /** `Deno.bench` group name (unique). */
  group: string;
  /** Short op family name for the report. */
  op: string;
  spec: CaseSpec;
  unit: Unit;
  /** FLOPs or bytes of one op. */
  work: number;
  /** Ops queued per timed iteration. */
  reps: number;
  /** Timed iterations (`Deno.bench` `n`). */
  n: number;
  /**
   * Warm-up iterations (`Deno.bench` `warmup`), after the untimed compile run. `Deno.bench` runs
   * two untimed-for-us calls of its own besides `n` whatever this is, so 0 is enough.
   */
  warmup: number;
  /** Also time our other matmul strategy in this group. */
  bothStrategies?: boolean;
  /**
   * TF.js takes seconds per op here (measured: its naive kernels): it is compiled on a batch-1
   * copy and timed on one full-size run outside `Deno.bench`, to keep the suite within minutes.
   */
  tfjsOnce?: boolean;
}

/** What `kernels_bench.ts` writes to `$BENCH_STATS_FILE` for the report. */
export interface KernelSideInfo {
  /** Per group: why TF.js's result was found wrong (its time is still reported). */
  notes: Record<string, string>;
  /** Per `tfjsOnce` group: milliseconds of TF.js's single full-size run. */
  tfjsOnceMs: Record<string, number>;
}

function matmulCase(
  m: number,
  n: number,
  k: number,
  fc: boolean,
  reps: number,
  iters: number,
  bothStrategies = false,
): KernelCase {
  const group = fc ? `matmul [${m},${k}]·[${n},${k}]ᵀ+bias` : `matmul ${m}×${k} · ${k}×${n}`;
  return {
    group,
    op: "matmul",
    spec: { kind: "matmul", m, n, k, transB: fc, bias: fc },
    unit: "GFLOP/s",
    work: 2 * m * n * k,
    reps,
    n: iters,
    warmup: 0,
    bothStrategies,
  };
}

/** Output side of a convolution with stride 1. */
function outSize(size: number, kernel: number, padding: number): number {
  return size + 2 * padding - kernel + 1;
}

function convCases(
  label: string,
  batch: number,
  inC: number,
  size: number,
  outC: number,
  kernel: number,
  padding: number,
  reps: readonly [number, number, number],
  iters: number,
  tfjsOnce: readonly [boolean, boolean, boolean] = [false, false, false],
): KernelCase[] {
  const o = outSize(size, kernel, padding);
  const work = 2 * batch * outC * o * o * inC * kernel * kernel;
  const shape = `${batch}×${inC}×${size}×${size}→${outC} ${kernel}×${kernel}` +
    (padding ? ` pad ${padding}` : "");
  const passes = [
    ["conv2d", "forward"],
    ["conv2dBackwardInput", "backward input"],
    ["conv2dBackwardWeight", "backward weight"],
  ] as const;
  return passes.map(([kind, pass], i) => ({
    group: `conv2d ${pass} ${label} ${shape}`,
    op: `conv2d ${pass}`,
    spec: { kind, batch, inC, size, outC, kernel, padding, bias: kind === "conv2d" },
    unit: "GFLOP/s" as const,
    work,
    reps: reps[i],
    n: iters,
    warmup: 0,
    tfjsOnce: tfjsOnce[i],
  }));
}

function poolCase(batch: number, c: number, size: number, reps: number): KernelCase {
  const out = batch * c * (size / 2) * (size / 2);
  return {
    group: `maxPool2d 2×2 ${batch}×${c}×${size}×${size}`,
    op: "maxPool2d",
    spec: { kind: "maxPool2d", batch, c, size },
    unit: "GB/s",
    // input read, pooled values and argmax indices written
    work: 4 * (batch * c * size * size + 2 * out),
    reps,
    n: 5,
    warmup: 0,
  };
}

/** Every kernel benchmark, in report order. */
export const KERNEL_CASES: readonly KernelCase[] = [
  matmulCase(256, 256, 256, false, 4, 8, true),
  matmulCase(1024, 1024, 1024, false, 1, 2),
  matmulCase(256, 120, 400, true, 10, 5),
  matmulCase(256, 84, 120, true, 10, 5),
  matmulCase(256, 10, 84, true, 10, 5),
  ...convCases("LeNet-5 conv1", 256, 1, 32, 6, 5, 0, [4, 2, 4], 4, [true, false, false]),
  ...convCases("LeNet-5 conv2", 256, 6, 14, 16, 5, 0, [1, 1, 1], 4),
  ...convCases("CIFAR 3×3", 64, 64, 32, 64, 3, 1, [1, 1, 1], 1, [true, true, true]),
  poolCase(256, 6, 28, 4),
  poolCase(64, 64, 32, 1),
  {
    group: "softmax [256,10]",
    op: "softmax",
    spec: { kind: "softmax", rows: 256, cols: 10 },
    unit: "GB/s",
    work: 4 * 2 * 256 * 10,
    reps: 20,
    n: 5,
    warmup: 0,
  },
  {
    group: "softmax [4096,1024]",
    op: "softmax",
    spec: { kind: "softmax", rows: 4096, cols: 1024 },
    unit: "GB/s",
    work: 4 * 2 * 4096 * 1024,
    reps: 1,
    n: 5,
    warmup: 0,
  },
  {
    group: "klDivLoss+grad [256,10] τ=20",
    op: "klDivLoss",
    spec: { kind: "klDivLoss", rows: 256, cols: 10, tau: 20 },
    unit: "GB/s",
    // targets and logits read, gradient written (the scalar loss is negligible)
    work: 4 * 3 * 256 * 10,
    reps: 20,
    n: 5,
    warmup: 0,
  },
  {
    group: "klDivLoss+grad [4096,1024] τ=20",
    op: "klDivLoss",
    spec: { kind: "klDivLoss", rows: 4096, cols: 1024, tau: 20 },
    unit: "GB/s",
    work: 4 * 3 * 4096 * 1024,
    reps: 1,
    n: 5,
    warmup: 0,
  },
];

/** One pipeline benchmark group (`pipeline_bench.ts`). */
export interface PipelineCase {
  /** `Deno.bench` group name (unique). */
  group: string;
  /** What one unit of throughput is. */
  unit: "sample-iterations/s" | "images/s";
  /** Units processed by one timed iteration. */
  units: number;
  /** Key of the matching figure in `baselines/pipeline_torch.py`'s JSON. */
  torchKey: "synthesis" | "distillation";
  /** Steps (synthesis iterations or KD batches) per timed call. */
  steps: number;
  /**
   * Dispatches per step before the loops' element-wise work was fused into its producers
   * (measured with this bench on the unfused code: 37 per synthesis iteration, 78 per KD step).
   */
  dispatchesBefore: number;
}

/** Synthesis: LeNet-5 teacher, batch 256, Adam on the pixels with clamp; one timed call runs this many steps. */
export const SYNTH_BATCH = 256;
/** Adam steps per timed synthesis call (one `synthesizeBatch` of this many iterations). */
export const SYNTH_STEPS = 20;
/** Distillation: LeNet-5 teacher, LeNet-5-half student, batch 128. */
export const DISTILL_BATCH = 128;
/** Distillation steps per timed call (one `distill` epoch over this many batches). */
export const DISTILL_STEPS = 20;
/** The loss is read back every this many steps, as the real loops do by default. */
export const LOG_EVERY = 10;

/** Every pipeline benchmark. */
export const PIPELINE_CASES: readonly PipelineCase[] = [
  {
    group: `synthesis LeNet-5, batch ${SYNTH_BATCH}`,
    unit: "sample-iterations/s",
    units: SYNTH_BATCH * SYNTH_STEPS,
    torchKey: "synthesis",
    steps: SYNTH_STEPS,
    dispatchesBefore: 37,
  },
  {
    group: `distillation LeNet-5 → LeNet-5-half, batch ${DISTILL_BATCH}`,
    unit: "images/s",
    units: DISTILL_BATCH * DISTILL_STEPS,
    torchKey: "distillation",
    steps: DISTILL_STEPS,
    dispatchesBefore: 78,
  },
];

/** Runtime counters summed over the timed calls of one pipeline group (`BENCH_STATS_FILE`). */
export interface PipelineStats {
  calls: number;
  wallMs: number;
  readbackMs: number;
  readbacks: number;
  submits: number;
  dispatches: number;
}

/** The TensorFlow.js version the baseline pins (`@tensorflow/tfjs-core`, `-backend-webgpu`). */
export const TFJS_VERSION = "4.22.0";

/** Bench names inside each group. */
export const NAMES = {
  ours: "ours",
  /** Our non-default matmul strategy, e.g. `"ours, tiled strategy"`. */
  oursAlt: (strategy: string): string => `ours, ${strategy} strategy`,
  tfjs: "tfjs-webgpu",
} as const;
