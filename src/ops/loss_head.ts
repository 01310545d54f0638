/**
 * Losses through a model's last fully connected layer, fused so that the logits are never
 * stored:
 *
 * - the synthesis loss of Wang (AAAI 2021) in one dispatch: logits `z = x·Wᵀ + b`,
 *   `mean_n KL(p_n ‖ softmax(z_n / tau))`, its gradient and that gradient carried back to the
 *   layer's input `x`;
 * - the distillation loss (Hinton et al. 2015) through the student's last layer, its gradient to
 *   the layer's input, and (a second pass) to the layer's weight and bias.
 *
 * @module
 */

import src from "../../kernels/loss_head.wgsl" with { type: "text" };
import kdSrc from "../../kernels/loss_head_kd.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { type LossReduction, reduceInto } from "./loss.ts";
import { Tensor } from "../tensor.ts";
import { checkMatrix, checkShape, checkTemperature } from "./_checks.ts";

/** Most classes the fused kernel handles (its `MAX_K`). */
export const LINEAR_KL_MAX_CLASSES = 32;

/** `struct Params` of kernels/loss_head.wgsl. */
const PARAMS = uniformLayout("Params", [
  ["n", "u32"],
  ["m", "u32"],
  ["tau", "f32"],
  ["grad_scale", "f32"],
  ["loss_scale", "f32"],
  ["has_bias", "u32"],
]);

/**
 * The checks of a fused head: `x: [N, M]`, `w: [K, M]`, `b: [K]` or null, the per-row tensor
 * `rowsName` `[N, K]`, K ≤ 32 and `tau` positive and finite. Returns `[N, M, K]`.
 */
function checkHead(
  op: string,
  tau: number,
  rowsName: string,
  rowsT: Tensor,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
): [number, number, number] {
  checkTemperature(op, tau);
  const [n, m] = checkMatrix(op, "x", x, true);
  const [k] = checkMatrix(op, "w", w, true);
  checkShape(op, "w", w.shape, [k, m]);
  checkShape(op, rowsName, rowsT.shape, [n, k]);
  if (b) checkShape(op, "b", b.shape, [k]);
  checkClasses(op, k);
  return [n, m, k];
}

/** @throws {RangeError} when `k` exceeds what the fused kernels take. */
function checkClasses(op: string, k: number): void {
  if (k > LINEAR_KL_MAX_CLASSES) {
    throw new RangeError(`${op}: ${k} classes; the fused kernel takes at most 32`);
  }
}

/**
 * `loss = mean_n KL(p_n ‖ softmax((x_n·Wᵀ + b) / tau))` (or `Σ_n` with `reduction` `"sum"`) and
 * `dloss/dx = (dloss/dz)·W`, with `dloss/dz = (Σ_k p_nk · q_n − p_n) / (N·tau)` (`/ tau` for the
 * sum), `q_n = softmax(z_n / tau)`, `0·log 0 = 0`.
 * One workgroup; the loss's sum runs in a fixed order (deterministic).
 *
 * @param p target distributions `[N, K]` (rows sum to 1), K ≤ 32.
 * @param x the layer's input `[N, M]`.
 * @param w the layer's weight `[K, M]`; `b` its bias `[K]` or null.
 * @param tau temperature (> 0).
 * @param reduction `"mean"` (default) or `"sum"` over the N rows.
 * @returns loss `[1]` and `gradX` `[N, M]`.
 * @throws {RangeError} when a shape disagrees, K exceeds 32 or `tau` is not positive and finite.
 */
export function linearKlDivLoss(
  p: Tensor,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  tau: number,
  reduction: LossReduction = "mean",
): { loss: Tensor; gradX: Tensor } {
  const [n, m, k] = checkHead("linearKlDivLoss", tau, "p", p, x, w, b);
  const rows = reduction === "sum" ? 1 : n;
  const loss = Tensor.empty([1]);
  const gradX = Tensor.empty(x.shape);
  dispatch(
    {
      name: "loss_head.linear_kl_div",
      code: src,
      entryPoint: "linear_kl_div",
      constants: { KC: k },
      uniforms: PARAMS,
    },
    [x.buffer, w.buffer, (b ?? w).buffer, p.buffer, gradX.buffer, loss.buffer],
    { n, m, tau, grad_scale: 1 / (rows * tau), loss_scale: 1 / rows, has_bias: b ? 1 : 0 },
    1,
  );
  return { loss, gradX };
}

const KD_PARAMS = uniformLayout("Params", [
  ["n", "u32"],
  ["m", "u32"],
  ["tau", "f32"],
  ["grad_scale", "f32"],
  ["has_bias", "u32"],
]);

/** The KD head's values: loss, `dloss/dz` (kept for the parameter gradients) and `dloss/dh`. */
export interface LinearKdResult {
  /** `[1]`. */
  loss: Tensor;
  /** `dloss/dz`, `[N, K]` (the input of {@link linearKdParamGrads}). */
  gradZ: Tensor;
  /** `dloss/dh`, `[N, M]`. */
  gradH: Tensor;
}

/**
 * The knowledge-distillation loss (Hinton et al. 2015) through the student's last linear layer:
 * `tau² · mean_n CE(softmax(t_n / tau), softmax((h_n·Wᵀ + b) / tau))`, with
 * `dloss/dz = tau · (Σ_k pt_nk · ps_n − pt_n) / N` and `dloss/dh = (dloss/dz)·W`, in one pass
 * plus the loss's sum; the student's logits are never stored.
 *
 * @param t teacher logits `[N, K]`, K ≤ 32.
 * @param h the student layer's input `[N, M]`.
 * @param w the layer's weight `[K, M]`; `b` its bias `[K]` or null.
 * @param tau temperature (> 0).
 * @throws {RangeError} when a shape disagrees, K exceeds 32 or `tau` is not positive and finite.
 */
export function linearKdLoss(
  t: Tensor,
  h: Tensor,
  w: Tensor,
  b: Tensor | null,
  tau: number,
): LinearKdResult {
  const [n, m, k] = checkHead("linearKdLoss", tau, "t", t, h, w, b);
  const gradZ = Tensor.empty([n, k]);
  const gradH = Tensor.empty(h.shape);
  const part = Tensor.empty([n]);
  dispatch(
    {
      name: "loss_head_kd.linear_kd",
      code: kdSrc,
      entryPoint: "linear_kd",
      constants: { KC: k },
      uniforms: KD_PARAMS,
    },
    [t.buffer, h.buffer, w.buffer, (b ?? w).buffer, gradZ.buffer, gradH.buffer, part.buffer],
    { n, m, tau, grad_scale: tau / n, has_bias: b ? 1 : 0 },
    groups(n, 64),
  );
  return { loss: reduceInto(part, n, (tau * tau) / n), gradZ, gradH };
}

/**
 * The gradients of a linear layer's weight and bias from `gradZ` (`dloss/dz`, `[N, K]`) and the
 * layer's input `h` (`[N, M]`): `dW = Σ_n gradZ_nᵀ h_n` (`[K, M]`) and, when `withBias`,
 * `db = Σ_n gradZ_n` (`[K]`), in one pass, summed over the rows in a fixed order.
 *
 * @throws {RangeError} when the row counts differ or K exceeds 32.
 */
export function linearKdParamGrads(
  gradZ: Tensor,
  h: Tensor,
  withBias: boolean,
): { gradW: Tensor; gradB: Tensor | null } {
  const op = "linearKdParamGrads";
  const [n, k] = checkMatrix(op, "gradZ", gradZ, true);
  const [, m] = checkMatrix(op, "h", h, true);
  checkShape(op, "h", h.shape, [n, m]);
  checkClasses(op, k);
  const gradW = Tensor.empty([k, m]);
  const gradB = Tensor.empty([withBias ? k : 1]);
  dispatch(
    {
      name: "loss_head_kd.linear_kd_params",
      code: kdSrc,
      entryPoint: "linear_kd_params",
      constants: { KC: k },
      uniforms: KD_PARAMS,
    },
    [gradZ.buffer, h.buffer, gradW.buffer, gradB.buffer],
    { n, m, tau: 1, grad_scale: 1, has_bias: withBias ? 1 : 0 },
    groups(k * m + k, 64),
  );
  if (withBias) return { gradW, gradB };
  gradB.dispose();
  return { gradW, gradB: null };
}
