/**
 * Argument checks shared by the ops. Every failure is a `RangeError` whose message starts with
 * the op's name, then names the argument and shows the shapes involved:
 * `"<op>: <argument> must be <what>, got <dtype> [<shape>]"`.
 *
 * @module
 */

import type { DType, Tensor } from "../tensor.ts";

/** `"f32 [2, 3]"`: a tensor's dtype and shape, as every message shows them. */
function describe(t: Tensor): string {
  return `${t.dtype} [${t.shape}]`;
}

/**
 * Checks the dtype of a tensor argument.
 *
 * @throws {RangeError} when `t` is not `dtype`.
 */
export function checkDtype(op: string, name: string, t: Tensor, dtype: DType = "f32"): void {
  if (t.dtype !== dtype) {
    throw new RangeError(`${op}: ${name} must be ${dtype}, got ${describe(t)}`);
  }
}

/**
 * Checks that `t` is a 2-D f32 matrix (with at least one element when `nonEmpty`).
 *
 * @returns its rows and columns.
 * @throws {RangeError} otherwise.
 */
export function checkMatrix(
  op: string,
  name: string,
  t: Tensor,
  nonEmpty = false,
): [number, number] {
  if (t.shape.length !== 2 || t.dtype !== "f32" || (nonEmpty && t.size === 0)) {
    const what = nonEmpty ? "a non-empty 2-D f32 [N, K] matrix" : "a 2-D f32 [M, N] matrix";
    throw new RangeError(`${op}: ${name} must be ${what}, got ${describe(t)}`);
  }
  return [t.shape[0], t.shape[1]];
}

/**
 * Checks that `shape` is a 4-D NCHW shape, without empty dimensions unless `allowEmpty`.
 *
 * @throws {RangeError} otherwise.
 */
export function checkRank4(
  op: string,
  name: string,
  shape: readonly number[],
  allowEmpty = false,
): void {
  if (shape.length !== 4 || (!allowEmpty && shape.some((d) => !Number.isInteger(d) || d < 1))) {
    const what = allowEmpty ? "a 4-D [N, C, H, W] shape" : "a non-empty 4-D [N, C, H, W] shape";
    throw new RangeError(`${op}: ${name} must be ${what}, got [${shape}]`);
  }
}

/**
 * Checks that an argument has exactly the shape `want`.
 *
 * @throws {RangeError} otherwise.
 */
export function checkShape(
  op: string,
  name: string,
  got: readonly number[],
  want: readonly number[],
): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new RangeError(`${op}: ${name} has shape [${got}], expected [${want}]`);
  }
}

/**
 * Checks that two tensor arguments have equal shapes.
 *
 * @throws {RangeError} otherwise.
 */
export function checkSameShape(op: string, a: string, ta: Tensor, b: string, tb: Tensor): void {
  if (ta.shape.length !== tb.shape.length || ta.shape.some((d, i) => d !== tb.shape[i])) {
    throw new RangeError(`${op}: ${a} [${ta.shape}] and ${b} [${tb.shape}] differ in shape`);
  }
}

/**
 * Checks that two tensor arguments have equal element counts.
 *
 * @throws {RangeError} otherwise.
 */
export function checkSameSize(op: string, a: string, ta: Tensor, b: string, tb: Tensor): void {
  if (ta.size !== tb.size) {
    throw new RangeError(`${op}: ${a} [${ta.shape}] and ${b} [${tb.shape}] differ in size`);
  }
}

/**
 * Checks that `labels` is a u32 vector of one class index per row of `z` (`n` rows).
 *
 * @throws {RangeError} otherwise.
 */
export function checkLabels(op: string, labels: Tensor, z: Tensor, n: number): void {
  if (labels.dtype !== "u32" || labels.shape.length !== 1 || labels.shape[0] !== n) {
    throw new RangeError(
      `${op}: labels must be u32 [${n}] for z [${z.shape}], got ${describe(labels)}`,
    );
  }
}

/**
 * Checks that a number argument is finite.
 *
 * @throws {RangeError} otherwise.
 */
export function checkFinite(op: string, name: string, x: number): void {
  if (!Number.isFinite(x)) throw new RangeError(`${op}: ${name} must be finite, got ${x}`);
}

/**
 * Checks a softmax temperature: positive and finite.
 *
 * @throws {RangeError} otherwise.
 */
export function checkTemperature(op: string, tau: number): void {
  if (!(tau > 0) || !Number.isFinite(tau)) {
    throw new RangeError(`${op}: temperature must be a positive finite number, got ${tau}`);
  }
}
