/**
 * Matrix multiply `C = op(A)·op(B) (+ bias)`, f32, with two kernels behind one op:
 *
 * - `"register"` (`kernels/matmul.wgsl`): each invocation computes up to a 16×16 block of C in
 *   registers from vec4 loads, no workgroup memory and no barriers. Fastest on software adapters
 *   (llvmpipe), where workgroup memory and barriers are slow. It reads and writes vec4
 *   and steps K by 4, so an operand whose stored row length or K is not a multiple of 4 is first
 *   copied into a zero-padded buffer, and a result with N not a multiple of 4 is computed with
 *   padded rows and cropped: one cheap extra pass each, only for such shapes.
 * - `"tiled"` (`kernels/matmul_tiled.wgsl`): workgroup-shared-memory tiling (64×64 tiles), the
 *   usual choice on real GPUs; any shape without padding.
 *
 * All four layouts (A·B, Aᵀ·B, A·Bᵀ, Aᵀ·Bᵀ) are specialised pipelines (override constants), so
 * the backward passes (`gy·W`, `gyᵀ·x`) run at forward speed without transposing copies.
 *
 * @module
 */

import src from "../../kernels/matmul.wgsl" with { type: "text" };
import tiledSrc from "../../kernels/matmul_tiled.wgsl" with { type: "text" };
import { dispatch, gpuContext, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkMatrix } from "./_checks.ts";
import { relu as reluOp, reluBackward } from "./elementwise.ts";

/** Which matmul kernel to run: register blocking (software adapters) or shared-memory tiling. */
export type MatmulStrategy = "register" | "tiled";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** A is stored `[K, M]` and used transposed. */
  transA?: boolean;
  /** B is stored `[N, K]` and used transposed. */
  transB?: boolean;
  /** Optional `[N]` vector added to every row of the result. */
  bias?: Tensor | null;
  /** Kernel to use; default {@link defaultMatmulStrategy}. */
  strategy?: MatmulStrategy;
  /** Apply `max(·, 0)` to the result, after the bias (a linear layer and its ReLU in one pass). */
  relu?: boolean;
  /**
   * Use `A ⊙ [reluMaskA > 0]` for A (`reluMaskA` stored like A): the backward of a ReLU whose
   * output is `reluMaskA`, fused into the product, e.g. `dx = (gy ⊙ [y > 0])·W`.
   */
  reluMaskA?: Tensor | null;
}

/** Rows and columns of C computed by one tiled-strategy workgroup. */
const TILED_BLOCK = 64;

const PAD = {
  name: "matmul.pad",
  code: src,
  entryPoint: "pad",
  uniforms: uniformLayout("PadParams", [
    ["rows", "u32"],
    ["cols", "u32"],
    ["src_stride", "u32"],
    ["out_rows", "u32"],
    ["out_stride", "u32"],
  ]),
};

/** `struct Params` of kernels/matmul_tiled.wgsl. */
const TILED_PARAMS = uniformLayout("Params", [
  ["M", "u32"],
  ["N", "u32"],
  ["K", "u32"],
  ["gx", "u32"],
  ["total", "u32"],
  ["has_bias", "u32"],
]);

/** `struct Params` of kernels/matmul.wgsl. */
const REGISTER_PARAMS = uniformLayout("Params", [
  ["M", "u32"],
  ["N", "u32"],
  ["K4", "u32"],
  ["sa", "u32"],
  ["sb", "u32"],
  ["sc", "u32"],
  ["gx", "u32"],
  ["total", "u32"],
  ["wgx", "u32"],
  ["wgy", "u32"],
  ["has_bias", "u32"],
]);

/**
 * Register-strategy launch shape: 4-row/4-column groups per invocation (pipeline constants) and
 * the arrangement of a workgroup's 64 invocations (uniforms; `wgX·wgY <= 64`).
 */
interface RegisterPlan {
  ni: number;
  nj: number;
  wgX: number;
  wgY: number;
}

const pow2ceil = (x: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/**
 * Blocks of up to 16×16 per invocation in 8×8 workgroups; thin results get thinner blocks and
 * workgroups stretched along the long side, so that the SIMD lanes (consecutive x) stay busy.
 */
function registerPlan(m: number, n: number): RegisterPlan {
  const ni = Math.min(4, Math.ceil(m / 4));
  const nj = Math.min(4, Math.ceil(n / 4));
  const tilesX = Math.ceil(n / (4 * nj));
  const tilesY = Math.ceil(m / (4 * ni));
  let wgX = Math.min(8, pow2ceil(tilesX));
  let wgY = Math.min(64 / wgX, pow2ceil(tilesY));
  // Keep at least two workgroups for two or more threads when the work allows it.
  while (wgX * wgY > 8 && Math.ceil(tilesX / wgX) * Math.ceil(tilesY / wgY) < 2) {
    if (wgY >= wgX) wgY /= 2;
    else wgX /= 2;
  }
  return { ni, nj, wgX, wgY };
}

function tiledKernel(transA: boolean, transB: boolean) {
  return {
    name: "matmul.tiled",
    code: tiledSrc,
    constants: { TRANS_A: Number(transA), TRANS_B: Number(transB) },
    uniforms: TILED_PARAMS,
  };
}

function registerKernel(
  transA: boolean,
  transB: boolean,
  plan: RegisterPlan,
  relu: boolean,
  maskA: boolean,
) {
  return {
    name: "matmul.register",
    code: src,
    uniforms: REGISTER_PARAMS,
    constants: {
      TRANS_A: Number(transA),
      TRANS_B: Number(transB),
      NI: plan.ni,
      NJ: plan.nj,
      RELU: Number(relu),
      MASK_A: Number(maskA),
    },
  };
}

/**
 * The strategy chosen for this adapter: `"register"` on software/fallback adapters (llvmpipe),
 * `"tiled"` on real GPUs.
 *
 * @throws {Error} when the GPU runtime is not initialised (`await initGpu()` first).
 */
export function defaultMatmulStrategy(): MatmulStrategy {
  return gpuContext().isFallbackAdapter ? "register" : "tiled";
}

/**
 * The top-left `[rows, cols]` of `src` (row stride `srcStride`) copied into a new
 * `[outRows, outCols]` tensor, zero elsewhere.
 */
function copyPadded(
  src: Tensor,
  rows: number,
  cols: number,
  srcStride: number,
  outRows: number,
  outCols: number,
): Tensor {
  const out = Tensor.empty([outRows, outCols]);
  dispatch(
    PAD,
    [src.buffer, out.buffer],
    { rows, cols, src_stride: srcStride, out_rows: outRows, out_stride: outCols },
    groups(outRows * outCols, 256),
  );
  return out;
}

/** `t` (`[rows, cols]`) zero-padded to `[outRows, stride]`, or `t` itself when it fits. */
function padded(t: Tensor, outRows: number, stride: number): Tensor {
  const [rows, cols] = t.shape;
  if (rows === outRows && cols === stride) return t;
  return copyPadded(t, rows, cols, cols, outRows, stride);
}

const ceil4 = (x: number): number => Math.ceil(x / 4) * 4;

/**
 * `C = op(A)·op(B) (+ bias broadcast over rows)`, f32.
 *
 * @param a `[M, K]`, or `[K, M]` when `transA`.
 * @param b `[K, N]`, or `[N, K]` when `transB`.
 * @param opts `transA`, `transB`, optional `bias` of shape `[N]`, and `strategy` (default
 *   {@link defaultMatmulStrategy}).
 * @returns C, `[M, N]`.
 * @throws {RangeError} when A or B is not a 2-D f32 matrix, when the inner dimensions of op(A)
 *   and op(B) differ, or when `bias` is not an f32 vector of N elements.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const bias = opts.bias ?? null;
  const strategy = opts.strategy ?? defaultMatmulStrategy();
  checkMatrix("matmul", "A", a);
  checkMatrix("matmul", "B", b);
  const [m, k] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [kb, n] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (k !== kb) {
    throw new RangeError(
      `matmul: inner dimensions differ: A [${a.shape}]${transA ? "ᵀ" : ""} · ` +
        `B [${b.shape}]${transB ? "ᵀ" : ""} (${k} vs ${kb})`,
    );
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== n || bias.dtype !== "f32")) {
    throw new RangeError(
      `matmul: bias must be an f32 vector [${n}] for the [${m}, ${n}] result, ` +
        `got ${bias.dtype} [${bias.shape}]`,
    );
  }
  const mask = opts.reluMaskA ?? null;
  if (mask) checkSameShapeAs("matmul", "reluMaskA", mask, a);
  if (m === 0 || n === 0) return Tensor.empty([m, n]);
  const relu = opts.relu ?? false;
  // The tiled kernel has no fused epilogue or masked load: separate passes there.
  if (strategy === "tiled" && (relu || mask)) {
    const am = mask ? reluBackward(mask, a) : a;
    const out = tiledMatmul({ a: am, b, bias, m, n, k, transA, transB, relu: false, mask: null });
    if (am !== a) am.dispose();
    if (!relu) return out;
    const y = reluOp(out);
    out.dispose();
    return y;
  }
  const product: Product = { a, b, bias, m, n, k, transA, transB, relu, mask };
  return strategy === "tiled" ? tiledMatmul(product) : registerMatmul(product);
}

function checkSameShapeAs(op: string, name: string, t: Tensor, a: Tensor): void {
  if (t.dtype !== "f32" || t.shape.join() !== a.shape.join()) {
    throw new RangeError(
      `${op}: ${name} must be f32 [${a.shape}] like A, got ${t.dtype} [${t.shape}]`,
    );
  }
}

/** The operands and sizes of one validated, non-empty product. */
interface Product {
  a: Tensor;
  b: Tensor;
  bias: Tensor | null;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  relu: boolean;
  /** Fused ReLU mask of A (register strategy only). */
  mask: Tensor | null;
}

/** The tiled strategy: any shape, no padding. */
function tiledMatmul({ a, b, bias, m, n, k, transA, transB }: Product): Tensor {
  const out = Tensor.empty([m, n]);
  const gx = groups(n, TILED_BLOCK);
  const total = gx * groups(m, TILED_BLOCK);
  dispatch(
    tiledKernel(transA, transB),
    [a.buffer, b.buffer, (bias ?? a).buffer, out.buffer],
    { M: m, N: n, K: k, gx, total, has_bias: bias ? 1 : 0 },
    total,
  );
  return out;
}

/** The register strategy (see the module doc for its padding). */
function registerMatmul(product: Product): Tensor {
  const { b, bias, m, n, k, transA, transB, relu } = product;
  // Register strategy: vec4 loads and stores and K in steps of 4 need row lengths and K
  // padded to multiples of 4.
  const k4 = ceil4(k);
  const n4 = ceil4(n);
  const fits = (t: Tensor) =>
    t.shape[0] === (transA ? k4 : m) && t.shape[1] === ceil4(product.a.shape[1]);
  // A mask must be laid out like the padded A: mask first when A needs padding.
  const premask = product.mask !== null && !fits(product.a);
  const a = premask ? reluBackward(product.mask!, product.a) : product.a;
  const mask = premask ? null : product.mask;
  const aPad = padded(a, transA ? k4 : m, ceil4(a.shape[1]));
  const bPad = padded(b, transB ? n : k4, ceil4(b.shape[1]));
  const plan = registerPlan(m, n);
  const gx = groups(n, 4 * plan.nj * plan.wgX);
  const total = gx * groups(m, 4 * plan.ni * plan.wgY);
  const out = Tensor.empty([m, n4]);
  dispatch(
    registerKernel(transA, transB, plan, relu, mask !== null),
    [aPad.buffer, bPad.buffer, (bias ?? a).buffer, out.buffer, (mask ?? aPad).buffer],
    {
      M: m,
      N: n,
      K4: k4 / 4,
      sa: aPad.shape[1] / 4,
      sb: bPad.shape[1] / 4,
      sc: n4 / 4,
      gx,
      total,
      wgx: plan.wgX,
      wgy: plan.wgY,
      has_bias: bias ? 1 : 0,
    },
    total,
  );
  if (aPad !== a) aPad.dispose();
  if (a !== product.a) a.dispose();
  if (bPad !== b) bPad.dispose();
  if (n4 === n) return out;
  const cropped = copyPadded(out, m, n, n4, m, n);
  out.dispose();
  return cropped;
}
