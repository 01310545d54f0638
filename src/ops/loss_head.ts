/**
 * The synthesis loss of Wang (AAAI 2021) through a model's last fully connected layer, fused
 * into one dispatch: logits `z = x·Wᵀ + b`, `mean_n KL(p_n ‖ softmax(z_n / tau))`, its gradient
 * and that gradient carried back to the layer's input `x`. The logits are never stored.
 *
 * @module
 */

import src from "../../kernels/loss_head.wgsl" with { type: "text" };
import { dispatch, uniformLayout } from "../gpu/runtime.ts";
import type { LossReduction } from "./loss.ts";
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
  const op = "linearKlDivLoss";
  checkTemperature(op, tau);
  const [n, m] = checkMatrix(op, "x", x, true);
  const [k] = checkMatrix(op, "w", w, true);
  checkShape(op, "w", w.shape, [k, m]);
  checkShape(op, "p", p.shape, [n, k]);
  if (b) checkShape(op, "b", b.shape, [k]);
  if (k > LINEAR_KL_MAX_CLASSES) {
    throw new RangeError(`${op}: ${k} classes; the fused kernel takes at most 32`);
  }
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
