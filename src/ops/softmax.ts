/**
 * Row-wise softmax and log-softmax with temperature `tau` over logits `[N, K]`, and their
 * backward rules. Numerically stable (the row max is subtracted before `exp`): finite for logits
 * of ±1e4 and any `tau` in [1, 100].
 *
 * @module
 */

import src from "../../kernels/softmax.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkMatrix, checkSameShape, checkTemperature } from "./_checks.ts";

/** `struct Params` of kernels/softmax.wgsl. */
const PARAMS = uniformLayout("Params", [["n", "u32"], ["k", "u32"], ["tau", "f32"]]);

const k = (entryPoint: string) => ({
  name: `softmax.${entryPoint}`,
  code: src,
  entryPoint,
  uniforms: PARAMS,
});
const SOFTMAX = k("softmax");
const LOG_SOFTMAX = k("log_softmax");
const SOFTMAX_BACKWARD = k("softmax_backward");
const LOG_SOFTMAX_BACKWARD = k("log_softmax_backward");

/** Rows per workgroup of the row kernels. */
const ROWS = 64;

function forward(kernel: typeof SOFTMAX, op: string, z: Tensor, tau: number): Tensor {
  checkTemperature(op, tau);
  const [n, kk] = checkMatrix(op, "z", z, true);
  const out = Tensor.empty(z.shape);
  dispatch(kernel, [z.buffer, out.buffer], { n, k: kk, tau }, groups(n, ROWS));
  return out;
}

function backward(kernel: typeof SOFTMAX, op: string, y: Tensor, gy: Tensor, tau: number): Tensor {
  checkTemperature(op, tau);
  const [n, kk] = checkMatrix(op, "y", y, true);
  checkMatrix(op, "gy", gy, true);
  checkSameShape(op, "y", y, "gy", gy);
  const out = Tensor.empty(y.shape);
  dispatch(
    kernel,
    [y.buffer, out.buffer, gy.buffer],
    { n, k: kk, tau },
    groups(n, ROWS),
  );
  return out;
}

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
  return forward(SOFTMAX, "softmax", z, tau);
}

/**
 * `log_softmax(z / tau)` of each row (computed as `(z - max)/tau - log Σ exp((z - max)/tau)`).
 *
 * @param z logits `[N, K]`, f32.
 * @param tau temperature, default 1.
 * @returns log-probabilities `[N, K]`.
 * @throws {RangeError} as {@link softmax}.
 */
export function logSoftmax(z: Tensor, tau = 1): Tensor {
  return forward(LOG_SOFTMAX, "logSoftmax", z, tau);
}

/**
 * Backward of {@link softmax}: `dL/dz = y ⊙ (gy - Σ_k gy_k y_k) / tau` per row.
 *
 * @param y the forward output `softmax(z / tau)`, `[N, K]`.
 * @param gy `dL/dy`, `[N, K]`.
 * @param tau the forward temperature, default 1.
 * @returns `dL/dz`, `[N, K]`.
 * @throws {RangeError} when `y` or `gy` is not a non-empty f32 `[N, K]` matrix, their shapes
 * differ, or `tau` is not positive and finite.
 */
export function softmaxBackward(y: Tensor, gy: Tensor, tau = 1): Tensor {
  return backward(SOFTMAX_BACKWARD, "softmaxBackward", y, gy, tau);
}

/**
 * Backward of {@link logSoftmax}: `dL/dz = (gy - exp(y) Σ_k gy_k) / tau` per row.
 *
 * @param y the forward output `log_softmax(z / tau)`, `[N, K]`.
 * @param gy `dL/dy`, `[N, K]`.
 * @param tau the forward temperature, default 1.
 * @returns `dL/dz`, `[N, K]`.
 * @throws {RangeError} as {@link softmaxBackward}.
 */
export function logSoftmaxBackward(y: Tensor, gy: Tensor, tau = 1): Tensor {
  return backward(LOG_SOFTMAX_BACKWARD, "logSoftmaxBackward", y, gy, tau);
}
