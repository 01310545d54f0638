/**
 * Row-wise softmax with temperature `tau` over logits `[N, K]`. Numerically stable (the row max
 * is subtracted before `exp`): finite for logits of ±1e4 and any `tau` in [1, 100].
 *
 * @module
 */

import src from "../../kernels/softmax.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkMatrix, checkTemperature } from "./_checks.ts";

const SOFTMAX = {
  name: "softmax.softmax",
  code: src,
  entryPoint: "softmax",
  uniforms: uniformLayout("Params", [["n", "u32"], ["k", "u32"], ["tau", "f32"]]),
};

/** Rows per workgroup of the row kernel. */
const ROWS = 64;

/**
 * `softmax(z / tau)` of each row.
 *
 * @param z logits `[N, K]`, f32.
 * @param tau temperature, default 1.
 * @returns probabilities `[N, K]`.
 * @throws {RangeError} when `z` is not a non-empty f32 `[N, K]` matrix or `tau` is not positive
 * and finite.
 */
export function softmax(z: Tensor, tau = 1): Tensor {
  const op = "softmax";
  checkTemperature(op, tau);
  const [n, k] = checkMatrix(op, "z", z, true);
  const out = Tensor.empty(z.shape);
  dispatch(SOFTMAX, [z.buffer, out.buffer], { n, k, tau }, groups(n, ROWS));
  return out;
}
