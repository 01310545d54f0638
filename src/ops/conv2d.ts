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
import {
  type Conv2dGeometry,
  conv2dGeometry,
  type Conv2dOptions,
  outputShape,
  UNIFORM_FLOATS,
} from "./_conv2d_geometry.ts";
import {
  backwardInputPass,
  type ConvPass,
  forwardPass,
  type ForwardPlan,
  forwardPlan,
  type PreparedLayout,
  type WeightChunks,
  weightChunks,
  weightGradPlan,
  weightGradRows,
} from "./_conv2d_plan.ts";

export type { Conv2dOptions } from "./_conv2d_geometry.ts";

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

function forwardKernel(pass: ConvPass, plan: ForwardPlan) {
  const entryPoint = pass.outWidth % 4 === 0 ? "forward_vec4" : "forward";
  const { ob: OB, pv: PV } = plan;
  return {
    name: `conv2d.${entryPoint}`,
    code: fwdSrc,
    entryPoint,
    constants: { KW: pass.kernelWidth, S: pass.stride, OB, PV, D: pass.source.dilation },
    uniforms: CONV_PARAMS,
  };
}

function weightGradKernel(g: Conv2dGeometry, tn: number) {
  const rw = weightGradRows(tn);
  return {
    name: "conv2d.weight_grad",
    code: bwdSrc,
    entryPoint: "weight_grad",
    constants: { KW: g.kernelWidth, S: g.stride, TN: tn, RW: rw },
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

/**
 * Queues `prepare_input`: `src` planes laid out as `l`, padding materialised. Rows of the result
 * that hold no source row are zeroed only when `clearRows` (the forward kernel skips them).
 */
function prepareInput(src: Tensor, l: PreparedLayout, clearRows: boolean): Tensor {
  const { dilation: D, padTop } = l;
  const out = Tensor.empty([l.planes * l.rows * l.phases * l.vec4s * 4]);
  // source rows iy with 0 <= padTop + iy*D < rows
  const iy0 = padTop >= 0 ? 0 : Math.ceil(-padTop / D);
  const iy1 = Math.min(l.height, Math.floor((l.rows - 1 - padTop) / D) + 1);
  const nRows = Math.max(0, iy1 - iy0);
  const everyRow = D === 1 && padTop <= 0 && nRows === l.rows;
  if (clearRows && !everyRow) clearBuffer(out.buffer, out.bytes);
  const rows = l.planes * nRows * l.phases;
  const vec4 = D === 1 && l.phases === 1 && l.padLeft % 4 === 0 && l.width % 4 === 0;
  dispatch(
    prepareInputKernel(D, vec4),
    [src.buffer, out.buffer],
    {
      rows,
      H: l.height,
      W: l.width,
      Hq: l.rows,
      Wq4: l.vec4s,
      phases: l.phases,
      padT: padTop >>> 0,
      padL: l.padLeft >>> 0,
      iy0,
      nRows,
    },
    groups(rows, 64),
  );
  return out;
}

/** Queues `prepare_weight`: `w` relaid out into the chunks `c`. */
function prepareWeights(w: Tensor, pass: ConvPass, ob: number, c: WeightChunks): Tensor {
  const total = c.nOC * c.nCC * c.chunk;
  const wt = Tensor.empty([total]);
  dispatch(
    PREPARE_WEIGHT,
    [w.buffer, wt.buffer],
    {
      total,
      Oc: pass.outChannels,
      Cc: pass.inChannels,
      KH: pass.kernelHeight,
      KWt: pass.kernelWidth,
      OBt: ob,
      SW: c.SW,
      CCH: c.CCH,
      nCC: c.nCC,
      NBC: c.NBC,
      flip: pass.flip ? 1 : 0,
    },
    groups(total, 256),
  );
  return wt;
}

/** The forward kernel's uniforms for weight chunk (`oc`, `cc`). */
function chunkUniforms(
  pass: ConvPass,
  plan: ForwardPlan,
  c: WeightChunks,
  oc: number,
  cc: number,
  hasBias: boolean,
) {
  const OCH = c.NBC * plan.ob;
  const o0 = oc * OCH;
  const on = Math.min(OCH, pass.outChannels - o0);
  const c0 = cc * c.CCH;
  return {
    Cx: pass.inChannels,
    c0,
    cn: Math.min(c.CCH, pass.inChannels - c0),
    Hq: plan.input.rows,
    Wq4: plan.input.vec4s,
    O: pass.outChannels,
    o0,
    on,
    ntap: c.CCH * pass.kernelHeight * pass.kernelWidth,
    OH: pass.outHeight,
    OW: pass.outWidth,
    KH: pass.kernelHeight,
    nOB: Math.ceil(on / plan.ob),
    nXB: plan.nXB,
    total: plan.total,
    mode: (hasBias && cc === 0 ? 1 : 0) | (cc > 0 ? 2 : 0),
    N: pass.batch,
    NB: plan.NB,
    rowLo: plan.rowLo,
    rowHi: plan.rowHi,
  };
}

/** Runs the forward kernel for `pass` on input `x` with weights `w` and optional bias. */
function convolve(x: Tensor, w: Tensor, bias: Tensor | null, pass: ConvPass): Tensor {
  const plan = forwardPlan(pass);
  const xq = prepareInput(x, plan.input, false);
  const chunks = weightChunks(pass, plan.ob);
  const wt = prepareWeights(w, pass, plan.ob, chunks);
  const y = Tensor.empty([pass.batch, pass.outChannels, pass.outHeight, pass.outWidth]);
  const ubo = weightBuffer();
  const kernel = forwardKernel(pass, plan);
  const { nOC, nCC, chunk } = chunks;
  for (let oc = 0; oc < nOC; oc++) {
    for (let cc = 0; cc < nCC; cc++) {
      copyBuffer(wt.buffer, ubo, chunk * 4, (oc * nCC + cc) * chunk * 4, 0);
      const uniforms = chunkUniforms(pass, plan, chunks, oc, cc, bias !== null);
      dispatch(
        kernel,
        [xq.buffer, ubo, (bias ?? xq).buffer, y.buffer],
        uniforms,
        groups(plan.total, 64) * uniforms.nOB,
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
  const g = conv2dGeometry(op, x.shape, w.shape, opts);
  if (bias) {
    checkDtype(op, "bias", bias);
    checkShape(op, "bias", bias.shape, [g.outChannels]);
  }
  return convolve(x, w, bias, forwardPass(g));
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
  const g = conv2dGeometry(op, inputShape, w.shape, opts);
  checkShape(op, "gy", gy.shape, outputShape(g));
  return convolve(gy, w, null, backwardInputPass(g));
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
  const g = conv2dGeometry(op, x.shape, weightShape, opts);
  checkShape(op, "gy", gy.shape, outputShape(g));
  const plan = weightGradPlan(g);
  const xq = prepareInput(x, plan.input, true);
  const gq = prepareInput(gy, plan.grad, false);
  const wsize = g.outChannels * g.inChannels * g.kernelHeight * g.kernelWidth;
  const gw = Tensor.empty([...weightShape]);
  const part = plan.groups > 1 ? Tensor.empty([plan.groups * wsize]) : gw;
  dispatch(
    weightGradKernel(g, plan.TN),
    [xq.buffer, gq.buffer, part.buffer],
    {
      C: g.inChannels,
      O: g.outChannels,
      Hq: plan.input.rows,
      Wq4: plan.input.vec4s,
      OH: g.outHeight,
      OW4: plan.grad.vec4s,
      KH: g.kernelHeight,
      nMB: plan.nMB,
      nOB: plan.nOB,
      N: g.batch,
      perGroup: plan.perGroup,
      total: plan.total,
      wsize,
    },
    groups(plan.total, 64),
  );
  xq.dispose();
  gq.dispose();
  if (part !== gw) {
    dispatch(
      REDUCE,
      [part.buffer, gw.buffer],
      { size: wsize, groups: plan.groups },
      groups(wsize, 64),
    );
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
