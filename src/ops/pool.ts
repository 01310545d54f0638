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
import { clearBuffer, dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkDtype, checkRank4, checkShape } from "./_checks.ts";

/** Window size and stride of a pooling layer. */
export interface Pool2dOptions {
  /** Window side `k` (windows are `k × k`). */
  kernelSize: number;
  /** Step between windows, default `kernelSize`. */
  stride?: number;
}

/** `struct Params` of kernels/pool.wgsl. */
const PARAMS = uniformLayout("Params", [
  ["rows", "u32"],
  ["H", "u32"],
  ["W", "u32"],
  ["OH", "u32"],
  ["OW", "u32"],
]);

function kernel(entryPoint: string, g: PoolGeometry) {
  return {
    name: `pool.${entryPoint}`,
    code: src,
    entryPoint,
    constants: { K: g.K, S: g.S },
    uniforms: PARAMS,
  };
}

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
  checkRank4(op, "input", shape);
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

function params(g: PoolGeometry, rows: number) {
  return { rows, H: g.H, W: g.W, OH: g.OH, OW: g.OW };
}

/**
 * Queues the backward pass of either pooling into a new gx: per window row when windows do not
 * overlap (after zeroing gx if some inputs lie in no window), else gathering per input row.
 */
function backward(
  kind: "max" | "avg",
  g: PoolGeometry,
  inputShape: readonly number[],
  buffers: GPUBuffer[],
): Tensor {
  const gx = Tensor.empty(inputShape);
  const planes = g.N * g.C;
  if (g.S >= g.K) {
    if (g.S !== g.K || g.OH * g.K !== g.H || g.OW * g.K !== g.W) clearBuffer(gx.buffer, gx.bytes);
    const rows = planes * g.OH;
    dispatch(
      kernel(`${kind}_backward_windows`, g),
      [...buffers, gx.buffer],
      params(g, rows),
      groups(rows, 64),
    );
  } else {
    const rows = planes * g.H;
    dispatch(
      kernel(`${kind}_backward_gather`, g),
      [...buffers, gx.buffer],
      params(g, rows),
      groups(rows, 64),
    );
  }
  return gx;
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
  checkDtype(op, "input", x, "f32");
  const g = geometry(op, x.shape, opts);
  const shape = [g.N, g.C, g.OH, g.OW];
  const y = Tensor.empty(shape);
  const argmax = Tensor.empty(shape, "u32");
  const rows = g.N * g.C * g.OH;
  dispatch(
    kernel("max_forward", g),
    [x.buffer, y.buffer, argmax.buffer],
    params(g, rows),
    groups(rows, 64),
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
  checkDtype(op, "gy", gy, "f32");
  checkDtype(op, "argmax", argmax, "u32");
  checkShape(op, "gy", gy.shape, outShape);
  checkShape(op, "argmax", argmax.shape, outShape);
  return backward("max", g, inputShape, [gy.buffer, argmax.buffer]);
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
  checkDtype(op, "input", x, "f32");
  const g = geometry(op, x.shape, opts);
  const y = Tensor.empty([g.N, g.C, g.OH, g.OW]);
  const rows = g.N * g.C * g.OH;
  dispatch(kernel("avg_forward", g), [x.buffer, y.buffer], params(g, rows), groups(rows, 64));
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
  checkDtype(op, "gy", gy, "f32");
  checkShape(op, "gy", gy.shape, [g.N, g.C, g.OH, g.OW]);
  return backward("avg", g, inputShape, [gy.buffer]);
}
