/**
 * Optimizer steps that update parameters and their state in place on the GPU (Adam, SGD with
 * momentum), and {@link scaleByScalar} for chaining a GPU-held scalar into a gradient.
 * Nothing is read back.
 *
 * @module
 */

import optimSrc from "../../kernels/optim.wgsl" with { type: "text" };
import tvGradSrc from "../../kernels/tv_grad.wgsl" with { type: "text" };
import { copyBuffer, dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkDtype, checkFinite, checkSameSize } from "./_checks.ts";
import { totalVariationScales } from "./loss.ts";
import { type ImageShift, inverseOffsets } from "./shift.ts";

/** kernels/optim.wgsl with the TV gradient its `adam_tv` calls. */
const src = tvGradSrc + optimSrc;

/** `struct Params` of kernels/optim.wgsl, shared by its entry points. */
const PARAMS = uniformLayout("Params", [
  ["n", "u32"],
  ["flag", "u32"],
  ["lr", "f32"],
  ["beta1", "f32"],
  ["beta2", "f32"],
  ["eps", "f32"],
  ["wd", "f32"],
  ["inv_sqrt_bc2", "f32"],
  ["lo", "f32"],
  ["hi", "f32"],
  ["one_m_beta1", "f32"],
  ["one_m_beta2", "f32"],
  ["h", "u32"],
  ["w", "u32"],
  ["sx", "f32"],
  ["rpi", "u32"],
  ["scatter", "u32"],
]);
/** Every f32 field zero: the fields an entry point does not read. */
const UNREAD = {
  lr: 0,
  beta1: 0,
  beta2: 0,
  eps: 0,
  wd: 0,
  inv_sqrt_bc2: 0,
  lo: 0,
  hi: 0,
  one_m_beta1: 0,
  one_m_beta2: 0,
  h: 0,
  w: 0,
  sx: 0,
  rpi: 0,
  scatter: 0,
};

const k = (entryPoint: string) => ({
  name: `optim.${entryPoint}`,
  code: src,
  entryPoint,
  uniforms: PARAMS,
});
const ADAM = k("adam");
const ADAM4 = k("adam4");
const ADAM_TV = k("adam_tv");
const ADAM_TV_JITTER = k("adam_tv_jitter");
const SGD = k("sgd");
const SCALE = k("scale_by_scalar");
const SIGN = k("sign_step");

/** Options of {@link adamStep}. */
export interface AdamOptions {
  /** Learning rate. */
  lr: number;
  /** First-moment decay, default 0.9. */
  beta1?: number;
  /** Second-moment decay, default 0.999. */
  beta2?: number;
  /** Added to the bias-corrected root of the second moment, default 1e-8. */
  eps?: number;
  /** L2 weight decay added to the gradient (`g + wd·param`, not decoupled), default 0. */
  weightDecay?: number;
  /** Lower bound the updated parameter is clamped to (e.g. the smallest valid pixel). */
  clampMin?: number;
  /** Upper bound the updated parameter is clamped to. */
  clampMax?: number;
}

/** Options of {@link sgdStep}. */
export interface SgdOptions {
  /** Learning rate. */
  lr: number;
  /** Momentum (heavy ball, no dampening), default 0. */
  momentum?: number;
  /** L2 weight decay added to the gradient, default 0. */
  weightDecay?: number;
  /** Nesterov momentum (needs `momentum > 0`), default false. */
  nesterov?: boolean;
}

function checkF32(op: string, named: Record<string, Tensor>): number {
  const entries = Object.entries(named);
  const [first, t0] = entries[0];
  const seen = new Map<GPUBuffer, string>();
  for (const [name, t] of entries) {
    checkDtype(op, name, t);
    checkSameSize(op, first, t0, name, t);
    const other = seen.get(t.buffer);
    if (other) throw new RangeError(`${op}: ${name} and ${other} share one buffer`);
    seen.set(t.buffer, name);
  }
  return t0.size;
}

/**
 * One Adam step (Kingma & Ba 2015) with bias correction for the 1-based step `t`, in place:
 * `g' = grad + wd·param`, `m = β1·m + (1-β1)·g'`, `v = β2·v + (1-β2)·g'²`,
 * `param -= lr/(1-β1^t) · m / (sqrt(v/(1-β2^t)) + eps)`, then, if either bound is given, the
 * updated param is clamped into `[clampMin, clampMax]` (a missing bound is ±Infinity).
 *
 * @param param parameters (any shape, f32), updated in place.
 * @param grad gradient, same element count.
 * @param m first-moment state, same element count, zero before step 1; updated in place.
 * @param v second-moment state, same element count, zero before step 1; updated in place.
 * @param t 1-based step number.
 * @param opts learning rate and hyper-parameters.
 * @throws {RangeError} when the tensors differ in element count, are not f32 or share a buffer,
 * `t` is not a positive integer, a hyper-parameter is out of range (`lr` not finite, betas outside
 * [0, 1), `eps` < 0), or `clampMin > clampMax`.
 */
export function adamStep(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  t: number,
  opts: AdamOptions,
): void {
  const n = checkF32("adamStep", { param, grad, m, v });
  const uniforms = adamUniforms("adamStep", t, opts);
  // Four elements per invocation when they divide evenly (a quarter of the invocations).
  const vec4 = n % 4 === 0;
  dispatch(
    vec4 ? ADAM4 : ADAM,
    [param.buffer, grad.buffer, m.buffer, v.buffer],
    { ...uniforms, n: vec4 ? n / 4 : n },
    groups(vec4 ? n / 4 : n, 256),
  );
  param.markModified();
}

/** The checked hyper-parameters of one Adam step as the kernel's uniforms (n left 0). */
function adamUniforms(op: string, t: number, opts: AdamOptions) {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = opts;
  if (!Number.isInteger(t) || t < 1) {
    throw new RangeError(`${op}: step t must be a positive integer, got ${t}`);
  }
  checkFinite(op, "lr", lr);
  checkFinite(op, "weightDecay", weightDecay);
  for (const [name, b] of [["beta1", beta1], ["beta2", beta2]] as const) {
    if (!(b >= 0 && b < 1)) throw new RangeError(`${op}: ${name} must be in [0, 1), got ${b}`);
  }
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new RangeError(`${op}: eps must be finite and >= 0, got ${eps}`);
  }
  const lo = opts.clampMin ?? -Infinity;
  const hi = opts.clampMax ?? Infinity;
  if (Number.isNaN(lo) || Number.isNaN(hi) || lo > hi) {
    throw new RangeError(`${op}: clamp range [${lo}, ${hi}] is empty or NaN`);
  }
  const doClamp = opts.clampMin !== undefined || opts.clampMax !== undefined;
  return {
    ...UNREAD,
    n: 0,
    flag: doClamp ? 1 : 0,
    lr: lr / (1 - beta1 ** t),
    beta1,
    beta2,
    eps,
    wd: weightDecay,
    inv_sqrt_bc2: 1 / Math.sqrt(1 - beta2 ** t),
    lo,
    hi,
    one_m_beta1: 1 - beta1,
    one_m_beta2: 1 - beta2,
  };
}

/**
 * One {@link adamStep} on images whose gradient also takes a total-variation prior:
 * `grad + weight · dTV/dx` with TV summed over the images as `totalVariation` with reduction
 * `"sum"`, the Adam update and the clamp in one pass. TV reads each pixel's neighbours, so the
 * step is not in place: it reads `x` and writes the updated images to `out`.
 *
 * @param x images `[N, C, H, W]`, f32, read only.
 * @param grad the gradient of the other loss terms, same shape; `m`, `v` the Adam state, updated.
 * @param out receives the updated images (same shape as x, another buffer).
 * @param weight the prior's weight λ_tv.
 * @throws {RangeError} as {@link adamStep}, when x is not 4-D, when `out` is `x`, or when
 *   `opts.weightDecay` is set (pixels take none).
 */
export function adamTvStep(
  x: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  t: number,
  opts: AdamOptions,
  weight: number,
  out: Tensor,
): void {
  const op = "adamTvStep";
  const { rows, uniforms } = adamTvUniforms(op, { x, grad, m, v, out }, t, opts, weight);
  dispatch(
    ADAM_TV,
    [out.buffer, grad.buffer, m.buffer, v.buffer, x.buffer],
    uniforms,
    groups(rows, 64),
  );
  out.markModified();
}

/**
 * The checks and uniforms shared by the Adam steps with the TV prior: the tensors f32, the same
 * size and in distinct buffers, `x` 4-D, `weight` finite, no weight decay; `n` is the image rows
 * and `wd` holds the TV's row scale.
 */
function adamTvUniforms(
  op: string,
  tensors: { x: Tensor } & Record<string, Tensor>,
  t: number,
  opts: AdamOptions,
  weight: number,
) {
  checkF32(op, tensors);
  checkFinite(op, "weight", weight);
  if (opts.weightDecay) throw new RangeError(`${op}: images take no weight decay`);
  const { rows, uniforms: tv } = totalVariationScales(op, tensors.x, weight);
  return {
    rows,
    tv,
    uniforms: { ...adamUniforms(op, t, opts), n: rows, wd: tv.sy, h: tv.h, w: tv.w, sx: tv.sx },
  };
}

/**
 * {@link adamTvStep} on images whose loss was taken at a jittered copy (synthesis jitter,
 * `shift2dPerImage(x, now)`), in one pass with the jitter's backward pass and, when `next` is
 * given, the next iteration's jittered copy: equal to `adamTvStep(x,
 * shift2dPerImageBackward(grad, now), …, out)` followed by `jittered = shift2dPerImage(out,
 * next)`, with two dispatches fewer.
 *
 * @param x images `[N, C, H, W]`, f32, read only.
 * @param grad the gradient of the jittered copy, same shape; `m`, `v` the Adam state, updated.
 * @param out receives the updated images (same shape as x, another buffer).
 * @param weight the prior's weight λ_tv (0: plain Adam on the un-jittered gradient).
 * @param now this iteration's shift of each image (N of them).
 * @param next the next iteration's shift of each image, or null to write no copy.
 * @param jittered receives the next jittered copy (same shape, another buffer; may be the
 *   tensor `grad` was taken at).
 * @throws {RangeError} as {@link adamTvStep}, or when `now` or `next` does not hold N shifts.
 */
export function adamTvJitterStep(
  x: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  t: number,
  opts: AdamOptions,
  weight: number,
  out: Tensor,
  now: readonly ImageShift[],
  next: readonly ImageShift[] | null,
  jittered: Tensor,
): void {
  const op = "adamTvJitterStep";
  const { rows, tv, uniforms } = adamTvUniforms(
    op,
    { x, grad, m, v, out, jittered },
    t,
    opts,
    weight,
  );
  const n = x.shape[0];
  for (const [name, s] of [["now", now], ["next", next]] as const) {
    if (s && s.length !== n) {
      throw new RangeError(`${op}: ${s.length} ${name} shifts for ${n} images`);
    }
  }
  const offs = new Uint32Array(6 * n);
  for (let i = 0; i < n; i++) {
    offs.set([...inverseOffsets(now[i], tv.h, tv.w), now[i].flip ? 1 : 0], 6 * i);
    if (next) offs.set([...inverseOffsets(next[i], tv.h, tv.w), next[i].flip ? 1 : 0], 6 * i + 3);
  }
  const table = Tensor.from(offs, [n, 6]);
  dispatch(
    ADAM_TV_JITTER,
    [out.buffer, grad.buffer, m.buffer, v.buffer, x.buffer, table.buffer, jittered.buffer],
    { ...uniforms, rpi: rows / n, scatter: next ? 1 : 0 },
    groups(rows, 64),
  );
  table.dispose(); // queued work keeps its order; the pool may hand the buffer out again safely
  out.markModified();
  if (next) jittered.markModified();
}

/**
 * One SGD step with optional momentum (PyTorch convention, no dampening), in place:
 * `g' = grad + wd·param`, `velocity = μ·velocity + g'`,
 * `param -= lr · (nesterov ? g' + μ·velocity : velocity)` (with `μ = 0` this is plain SGD).
 *
 * @param param parameters (any shape, f32), updated in place.
 * @param grad gradient, same element count.
 * @param velocity momentum buffer, same element count, zero before the first step; updated.
 * @param opts learning rate and hyper-parameters.
 * @throws {RangeError} when the tensors differ in element count, are not f32 or share a buffer,
 * `lr` or `weightDecay` is not finite, `momentum` is outside [0, 1], or `nesterov` is set
 * without momentum.
 */
export function sgdStep(param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
  const op = "sgdStep";
  const n = checkF32(op, { param, grad, velocity });
  const { lr, momentum = 0, weightDecay = 0, nesterov = false } = opts;
  checkFinite(op, "lr", lr);
  checkFinite(op, "weightDecay", weightDecay);
  if (!(momentum >= 0 && momentum <= 1)) {
    throw new RangeError(`${op}: momentum must be in [0, 1], got ${momentum}`);
  }
  if (nesterov && momentum === 0) {
    throw new RangeError(`${op}: nesterov needs momentum > 0`);
  }
  dispatch(
    SGD,
    [param.buffer, grad.buffer, velocity.buffer],
    { ...UNREAD, n, flag: nesterov ? 1 : 0, lr, beta1: momentum, wd: weightDecay },
    groups(n, 256),
  );
  param.markModified();
}

/**
 * One signed-gradient ascent step (FGSM, Goodfellow et al., ICLR 2015), in place:
 * `x = clamp(x + step · sign(grad), lo, hi)` with `sign(0) = 0`. Used to move distillation images
 * toward where student and teacher disagree.
 *
 * @param x any f32 tensor (e.g. images `[N, C, H, W]` in [0, 1]), updated in place.
 * @param grad gradient of the loss to increase, same element count.
 * @param step step size per element (pixel units); negative descends.
 * @param lo lower bound of the result (default -Infinity).
 * @param hi upper bound of the result (default Infinity).
 * @throws {RangeError} when the tensors differ in element count, are not f32 or share a buffer,
 * `step` is not finite, or `lo > hi`.
 */
export function signStep(
  x: Tensor,
  grad: Tensor,
  step: number,
  lo = -Infinity,
  hi = Infinity,
): void {
  const op = "signStep";
  const n = checkF32(op, { x, grad });
  checkFinite(op, "step", step);
  if (Number.isNaN(lo) || Number.isNaN(hi) || lo > hi) {
    throw new RangeError(`${op}: clamp range [${lo}, ${hi}] is empty or NaN`);
  }
  if (n === 0) return;
  dispatch(
    SIGN,
    [x.buffer, grad.buffer],
    {
      ...UNREAD,
      n,
      flag: Number.isFinite(lo) || Number.isFinite(hi) ? 1 : 0,
      lr: step,
      lo: Math.max(lo, -3.4e38),
      hi: Math.min(hi, 3.4e38),
    },
    groups(n, 256),
  );
  x.markModified();
}

/**
 * `x · s[0] · c` as a NEW tensor shaped like `x` (`x` is unchanged): chains an upstream scalar
 * held on the GPU (e.g. a loss weight or gradient `[1]`) into a gradient without a readback.
 *
 * @param x any f32 tensor.
 * @param s f32 scalar tensor of one element (`[1]`).
 * @param c constant factor, default 1.
 * @returns `x · s[0] · c`, shape of `x`.
 * @throws {RangeError} when `x` or `s` is not f32, `s` does not hold exactly one element, or `c`
 * is not finite.
 */
export function scaleByScalar(x: Tensor, s: Tensor, c = 1): Tensor {
  const op = "scaleByScalar";
  checkDtype(op, "x", x);
  checkDtype(op, "s", s);
  if (s.size !== 1) throw new RangeError(`${op}: s must hold one element, got [${s.shape}]`);
  checkFinite(op, "c", c);
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  // s is bound read_write (the kernel's shared layout): it must not be x's buffer too.
  const sCopy = s.buffer === x.buffer ? Tensor.empty([1]) : null;
  if (sCopy) copyBuffer(s.buffer, sCopy.buffer, 4);
  dispatch(
    SCALE,
    [out.buffer, x.buffer, (sCopy ?? s).buffer],
    { ...UNREAD, n: x.size, flag: 0, lr: c },
    groups(x.size, 256),
  );
  sCopy?.dispose();
  return out;
}
