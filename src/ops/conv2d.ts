/**
 * 2-D convolution (cross-correlation, as in PyTorch's `conv2d`) on NCHW `f32` tensors: forward,
 * gradients of the input, the weights and the bias.
 *
 * Square stride and padding, any kernel size `kH × kW`. Output size
 * `OH = floor((H + 2p − kH) / s) + 1` (likewise `OW`).
 *
 * How it runs (see the headers of `kernels/conv2d.wgsl` and `kernels/conv2d_backward_weight.wgsl`):
 * the input is first copied into a padded, row-aligned layout (column phases split by the stride),
 * the weights are relaid out and copied into a 64 KiB uniform buffer owned by this module (one
 * dispatch per chunk when they do not fit), and a register-blocked direct kernel computes the
 * output. The gradient of the input is the same kernel applied to the gradient of the output,
 * dilated by the stride and padded by `k − 1 − p`, with flipped, transposed weights (the kernel
 * skips the all-zero rows; for stride `s > 1` it still spends `s` times the necessary
 * multiply-adds on the inserted zero columns). The gradient of the weights is a split reduction
 * over groups of images followed by a sum over the groups.
 *
 * Every op only queues GPU work (no readback) and frees its temporaries.
 *
 * @module
 */

import fwdSrc from "../../kernels/conv2d.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/conv2d_backward_weight.wgsl" with { type: "text" };
import {
  clearBuffer,
  copyBuffer,
  dispatch,
  gpuContext,
  groups,
  uniformLayout,
} from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkDtype, checkRank4, checkShape } from "./_checks.ts";

/** Stride and zero padding of a convolution (both square). */
export interface Conv2dOptions {
  /** Step between output positions, default 1. */
  stride?: number;
  /** Zeros added on every side of the input, default 0. */
  padding?: number;
}

/** Floats in the uniform buffer that holds one chunk of weights (64 KiB). */
const UNIFORM_FLOATS = 16384;

/** `struct PrepParams` of kernels/conv2d.wgsl (`prepare_input`, `prepare_input_vec4`). */
const PREP_PARAMS = uniformLayout("PrepParams", [
  ["rows", "u32"],
  ["H", "u32"],
  ["W", "u32"],
  ["Hq", "u32"],
  ["Wq4", "u32"],
  ["phases", "u32"],
  ["padT", "u32"],
  ["padL", "u32"],
  ["iy0", "u32"],
  ["nRows", "u32"],
]);

/** `struct WeightParams` of kernels/conv2d.wgsl (`prepare_weight`). */
const WEIGHT_PARAMS = uniformLayout("WeightParams", [
  ["total", "u32"],
  ["Oc", "u32"],
  ["Cc", "u32"],
  ["KH", "u32"],
  ["KWt", "u32"],
  ["OBt", "u32"],
  ["SW", "u32"],
  ["CCH", "u32"],
  ["nCC", "u32"],
  ["NBC", "u32"],
  ["flip", "u32"],
]);

/** `struct ConvParams` of kernels/conv2d.wgsl (`forward`, `forward_vec4`). */
const CONV_PARAMS = uniformLayout("ConvParams", [
  ["Cx", "u32"],
  ["c0", "u32"],
  ["cn", "u32"],
  ["Hq", "u32"],
  ["Wq4", "u32"],
  ["O", "u32"],
  ["o0", "u32"],
  ["on", "u32"],
  ["ntap", "u32"],
  ["OH", "u32"],
  ["OW", "u32"],
  ["KH", "u32"],
  ["nOB", "u32"],
  ["nXB", "u32"],
  ["total", "u32"],
  ["mode", "u32"],
  ["N", "u32"],
  ["NB", "u32"],
  ["rowLo", "u32"],
  ["rowHi", "u32"],
]);

/** `struct Params` of kernels/conv2d_backward_weight.wgsl (`weight_grad`). */
const WEIGHT_GRAD_PARAMS = uniformLayout("Params", [
  ["C", "u32"],
  ["O", "u32"],
  ["Hq", "u32"],
  ["Wq4", "u32"],
  ["OH", "u32"],
  ["OW4", "u32"],
  ["KH", "u32"],
  ["nMB", "u32"],
  ["nOB", "u32"],
  ["N", "u32"],
  ["perGroup", "u32"],
  ["total", "u32"],
  ["wsize", "u32"],
]);

function prepareInputKernel(
  d: number,
  vec4: boolean,
) {
  const entryPoint = vec4 ? "prepare_input_vec4" : "prepare_input";
  return {
    name: `conv2d.${entryPoint}`,
    code: fwdSrc,
    entryPoint,
    constants: { D: d },
    uniforms: PREP_PARAMS,
  };
}
const PREPARE_WEIGHT = {
  name: "conv2d.prepare_weight",
  code: fwdSrc,
  entryPoint: "prepare_weight",
  uniforms: WEIGHT_PARAMS,
};
const BIAS_GRAD = {
  name: "conv2d.bias_grad",
  code: bwdSrc,
  entryPoint: "bias_grad",
  uniforms: uniformLayout("BiasParams", [
    ["O", "u32"],
    ["plane", "u32"],
    ["N", "u32"],
    ["perGroup", "u32"],
    ["total", "u32"],
  ]),
};
const REDUCE = {
  name: "conv2d.reduce_groups",
  code: bwdSrc,
  entryPoint: "reduce_groups",
  uniforms: uniformLayout("ReduceParams", [["size", "u32"], ["groups", "u32"]]),
};

function forwardKernel(
  kw: number,
  s: number,
  ob: number,
  pv: number,
  d: number,
  vec4Stores: boolean,
) {
  const entryPoint = vec4Stores ? "forward_vec4" : "forward";
  return {
    name: `conv2d.${entryPoint}`,
    code: fwdSrc,
    entryPoint,
    constants: { KW: kw, S: s, OB: ob, PV: pv, D: d },
    uniforms: CONV_PARAMS,
  };
}

/**
 * (c, ky) rows per invocation of the weight-gradient kernel: 5 (measured best for 5-wide
 * kernels), 3 when more than 5 taps per row would make too many accumulators. The kernel source
 * is specialised by rewriting its `const RW` (register arrays must be sized exactly).
 */
function weightGradRows(tn: number): number {
  return tn <= 5 ? 5 : 3;
}

function weightGradKernel(
  kw: number,
  s: number,
  tn: number,
) {
  const rw = weightGradRows(tn);
  return {
    name: `conv2d.weight_grad.rw${rw}`,
    code: bwdSrc.replace("const RW = 5u;", `const RW = ${rw}u;`),
    entryPoint: "weight_grad",
    constants: { KW: kw, S: s, TN: tn },
    uniforms: WEIGHT_GRAD_PARAMS,
  };
}

let uniformWeights: GPUBuffer | undefined;

/** The module's 64 KiB uniform buffer for weight chunks (reused: queued work runs in order). */
function weightBuffer(): GPUBuffer {
  uniformWeights ??= gpuContext().device.createBuffer({
    label: "conv2d weights",
    size: UNIFORM_FLOATS * 4,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  return uniformWeights;
}

/** Validated sizes of one convolution. */
interface Geometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  KH: number;
  KW: number;
  S: number;
  P: number;
  OH: number;
  OW: number;
}

function options(op: string, opts: Conv2dOptions | undefined): { S: number; P: number } {
  const S = opts?.stride ?? 1;
  const P = opts?.padding ?? 0;
  if (!Number.isInteger(S) || S < 1) {
    throw new RangeError(`${op}: stride ${S} must be an integer >= 1`);
  }
  if (!Number.isInteger(P) || P < 0) {
    throw new RangeError(`${op}: padding ${P} must be an integer >= 0`);
  }
  return { S, P };
}

function geometry(
  op: string,
  xShape: readonly number[],
  wShape: readonly number[],
  opts: Conv2dOptions | undefined,
): Geometry {
  checkRank4(op, "input", xShape);
  checkRank4(op, "weight", wShape);
  const [N, C, H, W] = xShape;
  const [O, Cw, KH, KW] = wShape;
  if (Cw !== C) {
    throw new RangeError(
      `${op}: weight [${wShape}] has ${Cw} input channels, input [${xShape}] has ${C}`,
    );
  }
  const { S, P } = options(op, opts);
  if (H + 2 * P < KH || W + 2 * P < KW) {
    throw new RangeError(
      `${op}: kernel ${KH}x${KW} is larger than the padded input ${H + 2 * P}x${W + 2 * P} ` +
        `(input [${xShape}], padding ${P})`,
    );
  }
  if (KH * KW * 8 > UNIFORM_FLOATS) {
    throw new RangeError(`${op}: kernel ${KH}x${KW} is too large (at most 2048 taps)`);
  }
  const OH = Math.floor((H + 2 * P - KH) / S) + 1;
  const OW = Math.floor((W + 2 * P - KW) / S) + 1;
  return { N, C, H, W, O, KH, KW, S, P, OH, OW };
}

/**
 * Register blocks of the forward kernel (output channels × vec4 groups of columns) with their
 * measured multiply-add rates on llvmpipe at full occupancy (GFLOP/s, 256×16×32×32 → 32, 5×5).
 */
const BLOCKS = [
  { ob: 4, pv: 2, rate: 24 },
  { ob: 8, pv: 1, rate: 21 },
  { ob: 2, pv: 4, rate: 18 },
  { ob: 1, pv: 4, rate: 11 },
  { ob: 1, pv: 8, rate: 12 },
] as const;

/**
 * Picks the block with the least predicted time per useful output: (K / rate + 1) / useful, where
 * K = C·kH·kW multiply-adds per output, the 1 stands for the fixed cost of an output (its
 * index math and store, about 24 multiply-adds' worth) and `useful` is the fraction of the
 * computed outputs that exist (channel and column blocks past the edge are wasted).
 */
function pickBlock(O: number, OW: number, K: number): { ob: number; pv: number } {
  let best: { ob: number; pv: number } = BLOCKS[0];
  let bestCost = Infinity;
  for (const b of BLOCKS) {
    const useful = (O / (Math.ceil(O / b.ob) * b.ob)) *
      (OW / (Math.ceil(OW / (4 * b.pv)) * 4 * b.pv));
    const cost = (K / b.rate + 1) / useful;
    if (cost < bestCost * (1 - 1e-9)) {
      bestCost = cost;
      best = b;
    }
  }
  return best;
}

/**
 * Queues `prepare_input`: `src` planes [planes, H, W] -> [planes, Hq, phases, Wq4 * 4], padding
 * materialised, optional dilation D. Rows of the result that hold no source row are zeroed only
 * when `clearRows` (the forward kernel skips them).
 */
function prepareInput(
  src: Tensor,
  planes: number,
  H: number,
  W: number,
  Hq: number,
  phases: number,
  Wq4: number,
  padT: number,
  padL: number,
  D: number,
  clearRows: boolean,
): Tensor {
  const out = Tensor.empty([planes * Hq * phases * Wq4 * 4]);
  // source rows iy with 0 <= padT + iy*D < Hq
  const iy0 = padT >= 0 ? 0 : Math.ceil(-padT / D);
  const iy1 = Math.min(H, Math.floor((Hq - 1 - padT) / D) + 1);
  const nRows = Math.max(0, iy1 - iy0);
  const everyRow = D === 1 && padT <= 0 && nRows === Hq;
  if (clearRows && !everyRow) clearBuffer(out.buffer, out.bytes);
  const rows = planes * nRows * phases;
  const vec4 = D === 1 && phases === 1 && padL % 4 === 0 && W % 4 === 0;
  dispatch(
    prepareInputKernel(D, vec4),
    [src.buffer, out.buffer],
    { rows, H, W, Hq, Wq4, phases, padT: padT >>> 0, padL: padL >>> 0, iy0, nRows },
    groups(rows, 64),
  );
  return out;
}

/**
 * Runs the forward kernel of a stride-`S` convolution on a prepared input, with weights `w`
 * ([Oc, Cc, KH, KW], or flipped/transposed from [Cc, Oc, KH, KW] when `flip`), into `y`.
 */
function convolve(
  xSrc: Tensor,
  planes: { H: number; W: number; D: number; padT: number; padL: number },
  w: Tensor,
  flip: boolean,
  bias: Tensor | null,
  N: number,
  Cc: number,
  Oc: number,
  KH: number,
  KW: number,
  S: number,
  OH: number,
  OW: number,
): Tensor {
  const taps = Math.ceil(KW / S);
  const { ob, pv } = pickBlock(Oc, OW, Cc * KH * KW);
  const nXB = Math.ceil(OW / (4 * pv));
  const Hq = (OH - 1) * S + KH;
  const Wq4 = nXB * pv + Math.floor((taps - 1) / 4) + 1;
  const xq = prepareInput(
    xSrc,
    N * Cc,
    planes.H,
    planes.W,
    Hq,
    S,
    Wq4,
    planes.padT,
    planes.padL,
    planes.D,
    false,
  );

  // Weight chunks of NBC blocks of `ob` output channels (SW floats per tap and block) for CCH
  // input channels each, at most 64 KiB.
  const SW = Math.max(4, ob);
  const perChannel = KH * KW * SW;
  const nBlocks = Math.ceil(Oc / ob);
  let NBC: number;
  let CCH: number;
  if (Cc * perChannel * nBlocks <= UNIFORM_FLOATS) {
    [NBC, CCH] = [nBlocks, Cc];
  } else if (Cc * perChannel <= UNIFORM_FLOATS) {
    [NBC, CCH] = [Math.floor(UNIFORM_FLOATS / (Cc * perChannel)), Cc];
  } else {
    [NBC, CCH] = [1, Math.floor(UNIFORM_FLOATS / perChannel)];
  }
  const OCH = NBC * ob;
  const nOC = Math.ceil(nBlocks / NBC);
  const nCC = Math.ceil(Cc / CCH);
  const chunk = NBC * CCH * perChannel;
  const wt = Tensor.empty([nOC * nCC * chunk]);
  dispatch(
    PREPARE_WEIGHT,
    [w.buffer, wt.buffer],
    {
      total: nOC * nCC * chunk,
      Oc,
      Cc,
      KH,
      KWt: KW,
      OBt: ob,
      SW,
      CCH,
      nCC,
      NBC,
      flip: flip ? 1 : 0,
    },
    groups(nOC * nCC * chunk, 256),
  );

  const y = Tensor.empty([N, Oc, OH, OW]);
  const ubo = weightBuffer();
  const kernel = forwardKernel(KW, S, ob, pv, planes.D, OW % 4 === 0);
  const NB = Math.min(N, Math.ceil(8 / nXB));
  const total = Math.ceil(N / NB) * NB * OH * nXB;
  // Rows of xq that hold input: from the first row r >= 0 with r ≡ padT (mod D) to one past the
  // last input row; the kernel skips the all-zero rows outside (and between, when dilated).
  const { D, padT } = planes;
  const rowLo = padT >= 0 ? padT : ((padT % D) + D) % D;
  const rowHi = Math.max(rowLo, Math.min(Hq, padT + (planes.H - 1) * D + 1));
  for (let oc = 0; oc < nOC; oc++) {
    for (let cc = 0; cc < nCC; cc++) {
      copyBuffer(wt.buffer, ubo, chunk * 4, (oc * nCC + cc) * chunk * 4, 0);
      const o0 = oc * OCH;
      const on = Math.min(OCH, Oc - o0);
      const c0 = cc * CCH;
      const nOB = Math.ceil(on / ob);
      const mode = (bias && cc === 0 ? 1 : 0) | (cc > 0 ? 2 : 0);
      dispatch(
        kernel,
        [xq.buffer, ubo, (bias ?? xq).buffer, y.buffer],
        {
          Cx: Cc,
          c0,
          cn: Math.min(CCH, Cc - c0),
          Hq,
          Wq4,
          O: Oc,
          o0,
          on,
          ntap: CCH * KH * KW,
          OH,
          OW,
          KH,
          nOB,
          nXB,
          total,
          mode,
          N,
          NB,
          rowLo,
          rowHi,
        },
        groups(total, 64) * nOB,
      );
    }
  }
  xq.dispose();
  wt.dispose();
  return y;
}

/**
 * 2-D convolution (cross-correlation) with optional bias.
 *
 * @param x input [N, C, H, W] (f32)
 * @param w weights [O, C, kH, kW] (f32)
 * @param bias [O] (f32) or null
 * @param opts stride (default 1) and zero padding (default 0)
 * @returns y [N, O, OH, OW], OH = floor((H + 2p − kH) / s) + 1, OW likewise
 * @throws {RangeError} when a tensor is not 4-D f32, the channel counts of `x` and `w` differ,
 *   `bias` is not [O], the kernel exceeds the padded input or 2048 taps, or stride/padding are
 *   not integers (stride >= 1, padding >= 0).
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2d";
  checkDtype(op, "input", x);
  checkDtype(op, "weight", w);
  const g = geometry(op, x.shape, w.shape, opts);
  if (bias) {
    checkDtype(op, "bias", bias);
    if (bias.size !== g.O || bias.shape.length !== 1) {
      throw new RangeError(`${op}: bias has shape [${bias.shape}], expected [${g.O}]`);
    }
  }
  return convolve(
    x,
    { H: g.H, W: g.W, D: 1, padT: g.P, padL: g.P },
    w,
    false,
    bias,
    g.N,
    g.C,
    g.O,
    g.KH,
    g.KW,
    g.S,
    g.OH,
    g.OW,
  );
}

/**
 * Gradient of {@link conv2d} with respect to its input.
 *
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @param w weights [O, C, kH, kW] (f32)
 * @param inputShape the forward input's shape [N, C, H, W]
 * @param opts the forward pass's stride and padding
 * @returns gx [N, C, H, W]
 * @throws {RangeError} when shapes are inconsistent: `gy` must be [N, O, OH, OW] for the
 *   convolution of `inputShape` by `w` with `opts`; also as {@link conv2d}.
 */
export function conv2dBackwardInput(
  gy: Tensor,
  w: Tensor,
  inputShape: readonly number[],
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2dBackwardInput";
  checkDtype(op, "gy", gy);
  checkDtype(op, "weight", w);
  const g = geometry(op, inputShape, w.shape, opts);
  checkShape(op, "gy", gy.shape, [g.N, g.O, g.OH, g.OW]);
  // gx = stride-1 convolution of gy (dilated by S, padded by k − 1 − p) with the flipped,
  // transposed weights; rows past the last window of the forward pass get zeros.
  return convolve(
    gy,
    { H: g.OH, W: g.OW, D: g.S, padT: g.KH - 1 - g.P, padL: g.KW - 1 - g.P },
    w,
    true,
    null,
    g.N,
    g.O,
    g.C,
    g.KH,
    g.KW,
    1,
    g.H,
    g.W,
  );
}

/**
 * Gradient of {@link conv2d} with respect to its weights (summed over the batch).
 *
 * @param x the forward input [N, C, H, W] (f32)
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @param weightShape [O, C, kH, kW]
 * @param opts the forward pass's stride and padding
 * @returns gw [O, C, kH, kW]
 * @throws {RangeError} when `gy` is not [N, O, OH, OW] for the convolution of `x` by a
 *   `weightShape` kernel with `opts`; also as {@link conv2d}.
 */
export function conv2dBackwardWeight(
  x: Tensor,
  gy: Tensor,
  weightShape: readonly number[],
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2dBackwardWeight";
  checkDtype(op, "input", x);
  checkDtype(op, "gy", gy);
  const g = geometry(op, x.shape, weightShape, opts);
  checkShape(op, "gy", gy.shape, [g.N, g.O, g.OH, g.OW]);
  const { N, C, O, KH, KW, S, OH, OW } = g;

  const TN = Math.min(8, Math.ceil(KW / S));
  const nMB = Math.ceil(Math.ceil(KW / S) / 8);
  const R = Math.floor((TN + 6) / 4);
  const OW4 = Math.ceil(OW / 4);
  const Hq = (OH - 1) * S + KH;
  const Wq4 = 2 * (nMB - 1) + OW4 + R - 1;
  const xq = prepareInput(x, N * C, g.H, g.W, Hq, S, Wq4, g.P, g.P, 1, true);
  const gq = prepareInput(gy, N * O, OH, OW, OH, 1, OW4, 0, 0, 1, false);

  const nOB = Math.ceil(O / 4);
  const perGroupItems = nOB * Math.ceil((C * KH) / weightGradRows(TN)) * S * nMB;
  // Enough invocations to keep every core busy, at least a few images per group when possible.
  const G = Math.max(1, Math.min(N, Math.ceil(2048 / perGroupItems)));
  const perGroup = Math.ceil(N / G);
  const G2 = Math.ceil(N / perGroup);
  const wsize = O * C * KH * KW;
  const gw = Tensor.empty([O, C, KH, KW]);
  const part = G2 > 1 ? Tensor.empty([G2 * wsize]) : gw;
  const total = G2 * perGroupItems;
  dispatch(
    weightGradKernel(KW, S, TN),
    [xq.buffer, gq.buffer, part.buffer],
    { C, O, Hq, Wq4, OH, OW4, KH, nMB, nOB, N, perGroup, total, wsize },
    groups(total, 64),
  );
  xq.dispose();
  gq.dispose();
  if (part !== gw) {
    dispatch(REDUCE, [part.buffer, gw.buffer], { size: wsize, groups: G2 }, groups(wsize, 64));
    part.dispose();
  }
  return gw;
}

/**
 * Gradient of {@link conv2d} with respect to its bias: the sum of `gy` over N, OH and OW.
 *
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @returns gb [O]
 * @throws {RangeError} when `gy` is not a 4-D f32 tensor.
 */
export function conv2dBackwardBias(gy: Tensor): Tensor {
  const op = "conv2dBackwardBias";
  checkDtype(op, "gy", gy);
  checkRank4(op, "gy", gy.shape);
  const [N, O, OH, OW] = gy.shape;
  const plane = OH * OW;
  // Groups of images so that about 1024 invocations share the sum.
  const G = Math.max(1, Math.min(N, Math.ceil(1024 / O)));
  const perGroup = Math.ceil(N / G);
  const G2 = Math.ceil(N / perGroup);
  const gb = Tensor.empty([O]);
  const part = G2 > 1 ? Tensor.empty([G2 * O]) : gb;
  dispatch(
    BIAS_GRAD,
    [gy.buffer, part.buffer],
    { O, plane, N, perGroup, total: G2 * O },
    groups(G2 * O, 64),
  );
  if (part !== gb) {
    dispatch(REDUCE, [part.buffer, gb.buffer], { size: O, groups: G2 }, groups(O, 64));
    part.dispose();
  }
  return gb;
}
