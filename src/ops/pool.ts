/**
 * 2-D max and average pooling on NCHW `f32` tensors: square `k × k` windows, stride `s`
 * (default `k`), no padding; `OH = floor((H − k) / s) + 1`, likewise `OW`.
 *
 * Max pooling records, for every output, the flat index into the input of its maximum (the first
 * one in row-major window order on ties); its backward pass gathers: each input element sums the
 * gradients of the outputs whose argmax it is (race-free, deterministic, also for overlapping
 * windows).
 *
 * @module
 */

import src from "../../kernels/pool.wgsl" with { type: "text" };
import { dispatch, groups, type Kernel } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";

/** Window size and stride of a pooling layer. */
export interface Pool2dOptions {
  /** Window side `k` (windows are `k × k`). */
  kernelSize: number;
  /** Step between windows, default `kernelSize`. */
  stride?: number;
}

const k = (entryPoint: string): Kernel => ({ name: `pool.${entryPoint}`, code: src, entryPoint });
const MAX_FORWARD = k("max_forward");
const MAX_BACKWARD = k("max_backward");
const AVG_FORWARD = k("avg_forward");
const AVG_BACKWARD = k("avg_backward");

interface PoolGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  K: number;
  S: number;
  OH: number;
  OW: number;
}

function geometry(op: string, shape: readonly number[], opts: Pool2dOptions): PoolGeometry {
  if (shape.length !== 4 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(`${op}: input must be a non-empty 4-D [N, C, H, W] shape, got [${shape}]`);
  }
  const K = opts.kernelSize;
  const S = opts.stride ?? K;
  if (!Number.isInteger(K) || K < 1) {
    throw new RangeError(`${op}: kernelSize ${K} must be an integer >= 1`);
  }
  if (!Number.isInteger(S) || S < 1) {
    throw new RangeError(`${op}: stride ${S} must be an integer >= 1`);
  }
  const [N, C, H, W] = shape;
  if (H < K || W < K) {
    throw new RangeError(`${op}: window ${K}x${K} is larger than the input [${shape}]`);
  }
  return { N, C, H, W, K, S, OH: Math.floor((H - K) / S) + 1, OW: Math.floor((W - K) / S) + 1 };
}

function expectShape(op: string, name: string, t: Tensor, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new RangeError(`${op}: ${name} has shape [${t.shape}], expected [${want}]`);
  }
}

function expectType(op: string, name: string, t: Tensor, dtype: "f32" | "u32"): void {
  if (t.dtype !== dtype) throw new RangeError(`${op}: ${name} must be ${dtype}, got ${t.dtype}`);
}

function params(g: PoolGeometry, total: number): { u32: number[] } {
  return { u32: [total, g.H, g.W, g.OH, g.OW, g.K, g.S] };
}

/**
 * Max pooling.
 *
 * @param x input [N, C, H, W] (f32)
 * @returns `y` [N, C, OH, OW] (f32) and `argmax` (u32, same shape as `y`): the flat index into
 *   `x` (over all of N·C·H·W) of each window's first maximum
 * @throws {RangeError} when `x` is not a non-empty 4-D f32 tensor, the window is larger than the
 *   input, or kernelSize/stride are not integers >= 1.
 */
export function maxPool2d(x: Tensor, opts: Pool2dOptions): { y: Tensor; argmax: Tensor } {
  const op = "maxPool2d";
  expectType(op, "input", x, "f32");
  const g = geometry(op, x.shape, opts);
  const shape = [g.N, g.C, g.OH, g.OW];
  const y = Tensor.empty(shape);
  const argmax = Tensor.empty(shape, "u32");
  dispatch(
    MAX_FORWARD,
    [x.buffer, y.buffer, argmax.buffer],
    params(g, y.size),
    groups(y.size, 256),
  );
  return { y, argmax };
}

/**
 * Gradient of {@link maxPool2d} with respect to its input.
 *
 * @param gy gradient of the output [N, C, OH, OW] (f32)
 * @param argmax the forward pass's argmax (u32, same shape as `gy`)
 * @param inputShape the forward input's shape [N, C, H, W]
 * @returns gx [N, C, H, W]: each element is the sum of `gy` over the outputs whose argmax it is
 * @throws {RangeError} when `gy` or `argmax` do not have the output shape of `inputShape` with
 *   `opts`, or have the wrong dtype; also as {@link maxPool2d}.
 */
export function maxPool2dBackward(
  gy: Tensor,
  argmax: Tensor,
  inputShape: readonly number[],
  opts: Pool2dOptions,
): Tensor {
  const op = "maxPool2dBackward";
  const g = geometry(op, inputShape, opts);
  const outShape = [g.N, g.C, g.OH, g.OW];
  expectType(op, "gy", gy, "f32");
  expectType(op, "argmax", argmax, "u32");
  expectShape(op, "gy", gy, outShape);
  expectShape(op, "argmax", argmax, outShape);
  const gx = Tensor.empty(inputShape);
  dispatch(
    MAX_BACKWARD,
    [gy.buffer, argmax.buffer, gx.buffer],
    params(g, gx.size),
    groups(gx.size, 256),
  );
  return gx;
}

/**
 * Average pooling (every window is full: no padding).
 *
 * @param x input [N, C, H, W] (f32)
 * @returns y [N, C, OH, OW], the mean of each window
 * @throws {RangeError} as {@link maxPool2d}.
 */
export function avgPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const op = "avgPool2d";
  expectType(op, "input", x, "f32");
  const g = geometry(op, x.shape, opts);
  const y = Tensor.empty([g.N, g.C, g.OH, g.OW]);
  dispatch(AVG_FORWARD, [x.buffer, y.buffer], params(g, y.size), groups(y.size, 256));
  return y;
}

/**
 * Gradient of {@link avgPool2d} with respect to its input.
 *
 * @param gy gradient of the output [N, C, OH, OW] (f32)
 * @param inputShape the forward input's shape [N, C, H, W]
 * @returns gx [N, C, H, W]: each element is the sum of `gy / k²` over the windows holding it
 * @throws {RangeError} when `gy` does not have the output shape of `inputShape` with `opts`;
 *   also as {@link maxPool2d}.
 */
export function avgPool2dBackward(
  gy: Tensor,
  inputShape: readonly number[],
  opts: Pool2dOptions,
): Tensor {
  const op = "avgPool2dBackward";
  const g = geometry(op, inputShape, opts);
  expectType(op, "gy", gy, "f32");
  expectShape(op, "gy", gy, [g.N, g.C, g.OH, g.OW]);
  const gx = Tensor.empty(inputShape);
  dispatch(AVG_BACKWARD, [gy.buffer, gx.buffer], params(g, gx.size), groups(gx.size, 256));
  return gx;
}
