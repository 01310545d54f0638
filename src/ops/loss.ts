/**
 * Batch-mean losses with fused gradients. Each loss returns the mean over the batch as a `[1]`
 * tensor that stays on the GPU (read it back only when needed) and the gradient of that mean with
 * respect to its logits/activations, shaped like the input.
 *
 * Two dispatches per loss: a parallel per-row (or per-chunk) kernel writes the gradient and one
 * partial loss per row, then a single 256-invocation workgroup sums the partials (tree reduction).
 *
 * @module
 */

import lossSrc from "../../kernels/loss.wgsl" with { type: "text" };
import ceSrc from "../../kernels/loss_ce.wgsl" with { type: "text" };
import reduceSrc from "../../kernels/loss_reduce.wgsl" with { type: "text" };
import tvKernelSrc from "../../kernels/loss_tv.wgsl" with { type: "text" };
import tvGradSrc from "../../kernels/tv_grad.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import {
  checkDtype,
  checkLabels,
  checkMatrix,
  checkSameShape,
  checkTemperature,
} from "./_checks.ts";

/** `struct Params` of kernels/loss.wgsl. */
const LOSS_PARAMS = uniformLayout("Params", [
  ["n", "u32"],
  ["k", "u32"],
  ["m", "u32"],
  ["tau", "f32"],
  ["scale", "f32"],
]);
const lossKernel = (entryPoint: string) => ({
  name: `loss.${entryPoint}`,
  code: lossSrc,
  entryPoint,
  uniforms: LOSS_PARAMS,
});
const KL_DIV = lossKernel("kl_div");
const KD = lossKernel("kd");
const KD_KL = lossKernel("kd_kl");
const ACT_ABS = lossKernel("act_abs");
const CROSS_ENTROPY = {
  name: "loss_ce.cross_entropy",
  code: ceSrc,
  entryPoint: "cross_entropy",
  uniforms: uniformLayout("Params", [["n", "u32"], ["k", "u32"], ["scale", "f32"]]),
};
/** kernels/loss_tv.wgsl with the per-pixel TV gradient it calls. */
const tvSrc = tvGradSrc + tvKernelSrc;

const TOTAL_VARIATION = {
  name: "loss_tv.tv",
  code: tvSrc,
  entryPoint: "tv",
  uniforms: uniformLayout("Params", [
    ["rows", "u32"],
    ["h", "u32"],
    ["w", "u32"],
    ["sy", "f32"],
    ["sx", "f32"],
  ]),
};
/** The sum kernel of kernels/loss_reduce.wgsl (also used by ./metrics.ts). */
const SUM = {
  name: "loss_reduce.sum",
  code: reduceSrc,
  entryPoint: "sum",
  uniforms: uniformLayout("Params", [["n", "u32"], ["scale", "f32"]]),
};

/** Rows per workgroup of the row kernels (kernels/loss.wgsl, kernels/loss_ce.wgsl). */
const ROWS = 64;
/** Elements per invocation of `act_abs` (its `CHUNK`). */
const CHUNK = 32;

/** A batch-mean loss and its gradient. */
export interface LossResult {
  /** The batch mean, shape `[1]`, on the GPU. */
  loss: Tensor;
  /** Gradient of {@link LossResult.loss} w.r.t. the logits/activations, shaped like them. */
  grad: Tensor;
}

/**
 * How a loss combines its samples: `"mean"` over the batch (the default), or `"sum"` of the
 * per-sample terms, whose gradient for one sample does not depend on the batch size N (synthesis
 * optimises each image on its own, so its result must not depend on the batch it was in).
 */
export type LossReduction = "mean" | "sum";

/** Normalisation of {@link activationLoss}. */
export type ActivationNorm = "sample-l1" | "element-mean";

/** Two non-empty f32 `[N, K]` matrices of equal shape; returns N and K. */
function checkPair(op: string, a: string, ta: Tensor, b: string, tb: Tensor): [number, number] {
  const nk = checkMatrix(op, a, ta, true);
  checkMatrix(op, b, tb, true);
  checkSameShape(op, a, ta, b, tb);
  return nk;
}

/**
 * Queues `out[0] = scale · Σ part[0..n)` (one pass, fixed order) and disposes `part` (the per-row
 * terms of a loss).
 */
export function reduceInto(part: Tensor, n: number, scale: number): Tensor {
  const loss = Tensor.empty([1]);
  dispatch(SUM, [part.buffer, loss.buffer], { n, scale }, 1);
  part.dispose(); // queued work keeps its order; the pool may hand the buffer out again safely
  return loss;
}

function rowLoss(
  kernel: typeof KL_DIV,
  x: Tensor,
  t: Tensor,
  n: number,
  k: number,
  tau: number,
  gradScale: number,
  lossScale: number,
): LossResult {
  const grad = Tensor.empty(x.shape);
  const part = Tensor.empty([n]);
  dispatch(
    kernel,
    [x.buffer, grad.buffer, part.buffer, t.buffer],
    { n, k, m: 0, tau, scale: gradScale },
    groups(n, ROWS),
  );
  return { loss: reduceInto(part, n, lossScale), grad };
}

/**
 * Synthesis loss of Wang (AAAI 2021): `mean_n KL(p_n ‖ softmax(z_n / tau))`, with `0·log 0 = 0`
 * (or `Σ_n KL(…)` with `reduction` `"sum"`). Gradient w.r.t. `z`:
 * `(Σ_k p_nk · softmax(z_n/tau) - p_n) / (N·tau)`, which is `(q_n - p_n) / (N·tau)` for target
 * rows that sum to 1 (without the `1/N` for `"sum"`).
 *
 * @param p target distributions `[N, K]` (rows sum to 1; zeros allowed).
 * @param z logits `[N, K]`.
 * @param tau temperature (> 0).
 * @param reduction `"mean"` (default) or `"sum"` over the N rows.
 * @returns loss `[1]` and `dloss/dz` `[N, K]`.
 * @throws {RangeError} when `p` or `z` is not a non-empty f32 `[N, K]` matrix, their shapes
 * differ, or `tau` is not positive and finite.
 */
export function klDivLoss(
  p: Tensor,
  z: Tensor,
  tau: number,
  reduction: LossReduction = "mean",
): LossResult {
  checkTemperature("klDivLoss", tau);
  const [n, k] = checkPair("klDivLoss", "p", p, "z", z);
  if (reduction === "sum") return rowLoss(KL_DIV, z, p, n, k, tau, 1 / tau, 1);
  return rowLoss(KL_DIV, z, p, n, k, tau, 1 / (n * tau), 1 / n);
}

/**
 * Hinton knowledge-distillation loss:
 * `tau² · mean_n CE(softmax(t_n / tau), softmax(s_n / tau))` with `CE(a, b) = -Σ_k a_k log b_k`
 * (it includes the teacher's entropy, so its minimum is not 0). Gradient w.r.t. the student
 * logits: `tau · (softmax(s_n/tau) - softmax(t_n/tau)) / N`.
 *
 * @param teacherLogits `[N, K]`.
 * @param studentLogits `[N, K]`.
 * @param tau temperature (> 0).
 * @returns loss `[1]` and `dloss/dstudentLogits` `[N, K]`.
 * @throws {RangeError} when either input is not a non-empty f32 `[N, K]` matrix, their shapes
 * differ, or `tau` is not positive and finite.
 */
export function kdLoss(teacherLogits: Tensor, studentLogits: Tensor, tau: number): LossResult {
  checkTemperature("kdLoss", tau);
  const [n, k] = checkPair(
    "kdLoss",
    "teacherLogits",
    teacherLogits,
    "studentLogits",
    studentLogits,
  );
  return rowLoss(KD, studentLogits, teacherLogits, n, k, tau, tau / n, (tau * tau) / n);
}

/**
 * The KL form of the knowledge-distillation loss, differentiable in both logits:
 * `tau² · mean_n KL(softmax(t_n / tau) ‖ softmax(s_n / tau))` (Hinton et al. 2015, without the
 * teacher's entropy, so its minimum is 0). Gradients, with `pt = softmax(t_n/tau)`,
 * `ps = softmax(s_n/tau)`, `d = log pt − log ps`:
 * w.r.t. `s`: `tau · (ps − pt) / N`; w.r.t. `t`: `tau · pt ⊙ (d − Σ_k pt_k d_k) / N`.
 * Used to move inputs toward where student and teacher disagree.
 *
 * @param teacherLogits `[N, K]`.
 * @param studentLogits `[N, K]`.
 * @param tau temperature (> 0).
 * @returns loss `[1]`, `grad` = dloss/dstudentLogits and `gradTeacher` = dloss/dteacherLogits,
 * both `[N, K]`.
 * @throws {RangeError} when either input is not a non-empty f32 `[N, K]` matrix, their shapes
 * differ, or `tau` is not positive and finite.
 */
export function kdDivergence(
  teacherLogits: Tensor,
  studentLogits: Tensor,
  tau: number,
): LossResult & { gradTeacher: Tensor } {
  checkTemperature("kdDivergence", tau);
  const [n, k] = checkPair(
    "kdDivergence",
    "teacherLogits",
    teacherLogits,
    "studentLogits",
    studentLogits,
  );
  const grad = Tensor.empty(studentLogits.shape);
  const gradTeacher = Tensor.empty(teacherLogits.shape);
  const part = Tensor.empty([n]);
  dispatch(
    KD_KL,
    [studentLogits.buffer, grad.buffer, part.buffer, teacherLogits.buffer, gradTeacher.buffer],
    { n, k, m: 0, tau, scale: tau / n },
    groups(n, ROWS),
  );
  return { loss: reduceInto(part, n, (tau * tau) / n), grad, gradTeacher };
}

/**
 * Cross-entropy with integer labels: `mean_n -log softmax(z_n)[label_n]`.
 * Gradient w.r.t. `z`: `(softmax(z_n) - onehot(label_n)) / N`.
 * A label `≥ K` cannot be checked without a readback: it makes the loss NaN.
 *
 * @param z logits `[N, K]`, f32.
 * @param labels class indices `[N]`, u32.
 * @returns loss `[1]` and `dloss/dz` `[N, K]`.
 * @throws {RangeError} when `z` is not a non-empty f32 `[N, K]` matrix or `labels` is not a u32
 * `[N]` vector.
 */
export function crossEntropyLoss(z: Tensor, labels: Tensor): LossResult {
  const [n, k] = checkMatrix("crossEntropyLoss", "z", z, true);
  checkLabels("crossEntropyLoss", labels, z, n);
  const grad = Tensor.empty(z.shape);
  const part = Tensor.empty([n]);
  dispatch(
    CROSS_ENTROPY,
    [z.buffer, grad.buffer, part.buffer, labels.buffer],
    { n, k, scale: 1 / n },
    groups(n, ROWS),
  );
  return { loss: reduceInto(part, n, 1 / n), grad };
}

/**
 * Activation loss `L_a` over `a: [N, ...]` (e.g. the first conv layer's output `[N, C, H, W]`):
 * - `"sample-l1"`: `-(1/N) Σ_n ‖a_n‖₁` (the paper's form; scales with the feature size);
 * - `"element-mean"`: `-(1/numel) Σ |a|`.
 *
 * Gradient: `-sign(a) / N` or `-sign(a) / numel` (0 where `a = 0`). With `reduction` `"sum"`
 * the per-sample terms are summed instead: `-Σ_n ‖a_n‖₁` and `-Σ_n ‖a_n‖₁ / numel(a_n)`, with
 * gradients `-sign(a)` and `-sign(a) / numel(a_n)`, independent of N.
 *
 * @param a activations, f32, at least one dimension, non-empty.
 * @param norm the normalisation.
 * @param reduction `"mean"` (default) or `"sum"` over the N samples.
 * @returns loss `[1]` and `dL_a/da` shaped like `a`.
 * @throws {RangeError} when `a` is empty, not f32, or `norm` is unknown.
 */
export function activationLoss(
  a: Tensor,
  norm: ActivationNorm,
  reduction: LossReduction = "mean",
): LossResult {
  if (a.shape.length === 0 || a.size === 0) {
    throw new RangeError(`activationLoss: a must be a non-empty [N, ...] tensor, got [${a.shape}]`);
  }
  checkDtype("activationLoss", "a", a);
  const samples = reduction === "sum" ? 1 : a.shape[0];
  let scale: number;
  if (norm === "sample-l1") scale = 1 / samples;
  else if (norm === "element-mean") scale = 1 / (a.size / a.shape[0] * samples);
  else throw new RangeError(`activationLoss: unknown norm "${norm}"`);
  const wgs = groups(a.size, 256 * CHUNK);
  const slots = wgs * 256;
  const grad = Tensor.empty(a.shape);
  const part = Tensor.empty([slots]);
  dispatch(
    ACT_ABS,
    [a.buffer, grad.buffer, part.buffer],
    { n: a.size, k: 0, m: slots, tau: 1, scale },
    wgs,
  );
  return { loss: reduceInto(part, slots, -scale), grad };
}

/**
 * Anisotropic total variation of images `x: [N, C, H, W]` (the image prior of Mahendran &
 * Vedaldi, 2015, used by DeepInversion): each image's mean absolute difference between vertical
 * and between horizontal neighbours, `TV_n = Σ|x[r+1,c] − x[r,c]| / (C·(H−1)·W) +
 * Σ|x[r,c+1] − x[r,c]| / (C·H·(W−1))` (a term is 0 when its dimension is 1), averaged over the
 * batch (or summed with `reduction` `"sum"`). Gradient: the signs of the differences, with those
 * scales (`sign(0) = 0`).
 *
 * @param x images, f32 NCHW, non-empty.
 * @param reduction `"mean"` (default) or `"sum"` over the N images.
 * @returns loss `[1]` and `dTV/dx` shaped like `x`.
 * @throws {RangeError} when `x` is not a non-empty f32 4-D tensor.
 */
export function totalVariation(x: Tensor, reduction: LossReduction = "mean"): LossResult {
  const { rows, uniforms } = totalVariationScales(
    "totalVariation",
    x,
    reduction === "sum" ? 1 : 1 / x.shape[0],
  );
  const grad = Tensor.empty(x.shape);
  const part = Tensor.empty([rows]);
  dispatch(
    TOTAL_VARIATION,
    [x.buffer, grad.buffer, part.buffer],
    uniforms,
    groups(rows, 64),
  );
  return { loss: reduceInto(part, rows, 1), grad };
}

/**
 * The shape checks and scales of the total-variation kernels, each image's term times `perImage`:
 * `rows = N·C·H`, `sy = perImage / (C (H−1) W)`, `sx = perImage / (C H (W−1))` (0 for a single
 * row or column).
 *
 * @throws {RangeError} naming `op` when `x` is not a non-empty f32 4-D tensor.
 */
export function totalVariationScales(
  op: string,
  x: Tensor,
  perImage: number,
): { rows: number; uniforms: { rows: number; h: number; w: number; sy: number; sx: number } } {
  if (x.shape.length !== 4 || x.size === 0) {
    throw new RangeError(`${op}: x must be a non-empty [N, C, H, W] tensor, got [${x.shape}]`);
  }
  checkDtype(op, "x", x);
  const [n, c, h, w] = x.shape;
  const rows = n * c * h;
  const sy = h > 1 ? perImage / (c * (h - 1) * w) : 0;
  const sx = w > 1 ? perImage / (c * h * (w - 1)) : 0;
  return { rows, uniforms: { rows, h, w, sy, sx } };
}
