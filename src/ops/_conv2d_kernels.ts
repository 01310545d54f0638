/**
 * The convolution kernels and how they are queued: the uniform layouts of the WGSL structs, the
 * kernel definitions, the 64 KiB uniform buffer for weight chunks, the input and weight
 * preparation passes and the chunked forward run.
 *
 * @module
 */

import fwdSrc from "../../kernels/conv2d.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/conv2d_backward_weight.wgsl" with { type: "text" };
import {
  clearBuffer,
  copyBuffer,
  dispatch,
  flush,
  gpuContext,
  groups,
  uniformLayout,
} from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { type Conv2dGeometry, UNIFORM_FLOATS } from "./_conv2d_geometry.ts";
import {
  type ConvPass,
  type ForwardPlan,
  forwardPlan,
  type PreparedLayout,
  type WeightChunks,
  weightChunks,
  weightGradRows,
} from "./_conv2d_plan.ts";

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
export const BIAS_GRAD = {
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
export const REDUCE = {
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

export function weightGradKernel(g: Conv2dGeometry, tn: number) {
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
export function prepareInput(src: Tensor, l: PreparedLayout, clearRows: boolean): Tensor {
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

/**
 * The weight chunks of `pass` as uniform buffers: `chunk(i)` is queued right before the dispatch
 * that reads chunk i ((oc, cc) order), `done()` after the last. Frozen weights (`requiresGrad`
 * false) keep their buffers with the tensor until it changes, so a frozen teacher's weights are
 * relaid out once; others are relaid out now and copied chunk by chunk into the module's buffer
 * (queued work runs in order, so one buffer serves every chunk).
 */
function weightUniforms(
  w: Tensor,
  pass: ConvPass,
  ob: number,
  c: WeightChunks,
): { chunk: (i: number) => GPUBuffer; done: () => void } {
  if (w.requiresGrad) {
    const wt = prepareWeights(w, pass, ob, c);
    const ubo = weightBuffer();
    return {
      chunk: (i) => {
        copyBuffer(wt.buffer, ubo, c.chunk * 4, i * c.chunk * 4, 0);
        return ubo;
      },
      done: () => wt.dispose(),
    };
  }
  const ubos = frozenWeightUniforms(w, pass, ob, c);
  return { chunk: (i) => ubos[i], done: () => {} };
}

/** The uniform buffers of frozen weights, made once per weight version and pass. */
function frozenWeightUniforms(w: Tensor, pass: ConvPass, ob: number, c: WeightChunks) {
  const count = c.nOC * c.nCC;
  const key = `conv2d.weights|${pass.flip}|${pass.inChannels}|${ob}|${JSON.stringify(c)}`;
  return w.derived(key, () => {
    const wt = prepareWeights(w, pass, ob, c);
    const device = gpuContext().device;
    const ubos = Array.from({ length: count }, (_, i) => {
      const ubo = device.createBuffer({
        label: "conv2d frozen weights",
        size: UNIFORM_FLOATS * 4,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      copyBuffer(wt.buffer, ubo, c.chunk * 4, i * c.chunk * 4, 0);
      return ubo;
    });
    wt.dispose();
    // Queued work may still read them: submit it before destroying them.
    const dispose = () => {
      flush();
      for (const b of ubos) b.destroy();
    };
    return { value: ubos, dispose };
  });
}

/**
 * Whether the forward kernel can read `x` itself as its prepared input: no padding, stride and
 * dilation 1 and rows of whole vec4s. Its row stride is then `W / 4` vec4s instead of the
 * prepared layout's; the vec4s it reads past a row's end feed only outputs past `OW`, which are
 * not stored.
 */
function readsRaw(pass: ConvPass, plan: ForwardPlan): boolean {
  const s = pass.source;
  return s.dilation === 1 && pass.stride === 1 && s.padTop === 0 && s.padLeft === 0 &&
    s.width % 4 === 0 && plan.input.rows === s.height;
}

/** Runs the forward kernel for `pass` on input `x` with weights `w` and optional bias. */
export function convolve(x: Tensor, w: Tensor, bias: Tensor | null, pass: ConvPass): Tensor {
  const plan = forwardPlan(pass);
  if (readsRaw(pass, plan)) return convolvePrepared(x, pass.source.width / 4, w, bias, pass, plan);
  const xq = prepareInput(x, plan.input, false);
  const y = convolvePrepared(xq, plan.input.vec4s, w, bias, pass, plan);
  xq.dispose();
  return y;
}

/**
 * Runs the forward kernel for `pass` on an input already laid out as `plan.input` (rows of
 * `wq4` vec4s), e.g. written by a fused producer.
 */
export function convolvePrepared(
  xq: Tensor,
  wq4: number,
  w: Tensor,
  bias: Tensor | null,
  pass: ConvPass,
  plan: ForwardPlan = forwardPlan(pass),
): Tensor {
  const chunks = weightChunks(pass, plan.ob);
  const weights = weightUniforms(w, pass, plan.ob, chunks);
  const y = Tensor.empty([pass.batch, pass.outChannels, pass.outHeight, pass.outWidth]);
  const kernel = forwardKernel(pass, plan);
  for (let oc = 0; oc < chunks.nOC; oc++) {
    for (let cc = 0; cc < chunks.nCC; cc++) {
      const uniforms = { ...chunkUniforms(pass, plan, chunks, oc, cc, bias !== null), Wq4: wq4 };
      dispatch(
        kernel,
        [xq.buffer, weights.chunk(oc * chunks.nCC + cc), (bias ?? xq).buffer, y.buffer],
        uniforms,
        groups(plan.total, 64) * uniforms.nOB,
      );
    }
  }
  weights.done();
  return y;
}
