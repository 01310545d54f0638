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
import type { PreparedLayout } from "./_conv2d_plan.ts";
import { reluBackward } from "./elementwise.ts";

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

/** `struct PrepParams` of kernels/pool.wgsl (`max_backward_prepared`). */
const PREP_PARAMS = uniformLayout("PrepParams", [
  ["rows", "u32"],
  ["H", "u32"],
  ["W", "u32"],
  ["OH", "u32"],
  ["OW", "u32"],
  ["Hq", "u32"],
  ["Wq4", "u32"],
  ["padT", "u32"],
  ["padL", "u32"],
  ["iy0", "u32"],
  ["nRows", "u32"],
  ["bands", "u32"],
]);

function kernel(entryPoint: string, g: PoolGeometry, extra: Record<string, number> = {}) {
  return {
    name: `pool.${entryPoint}`,
    code: src,
    entryPoint,
    constants: { K: g.K, S: g.S, ...extra },
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
 * Max pooling, optionally of `relu(x)` (a ReLU fused before the pool: `y = max(0, window max)`,
 * one pass instead of two; the argmax is still the window's first maximum of `x`).
 *
 * @param x input [N, C, H, W] (f32)
 * @param relu pool `max(x, 0)` instead of `x` (default false)
 * @returns `y` [N, C, OH, OW] (f32) and `argmax` (u32, same shape as `y`): the flat index into
 *   `x` (over all of N·C·H·W) of each window's first maximum
 * @throws {RangeError} when `x` is not a non-empty 4-D f32 tensor, the window is larger than the
 *   input, or kernelSize/stride are not integers >= 1.
 */
export function maxPool2d(
  x: Tensor,
  opts: Pool2dOptions,
  relu = false,
): { y: Tensor; argmax: Tensor } {
  const op = "maxPool2d";
  checkDtype(op, "input", x, "f32");
  const g = geometry(op, x.shape, opts);
  const shape = [g.N, g.C, g.OH, g.OW];
  const y = Tensor.empty(shape);
  const argmax = Tensor.empty(shape, "u32");
  const rows = g.N * g.C * g.OH;
  dispatch(
    kernel("max_forward", g, { RELU: Number(relu) }),
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
 * @param y after a fused ReLU (`relu = true`), the forward output: the gradient passes only
 *   where `y > 0` (the ReLU's backward, in the same pass for non-overlapping windows)
 * @returns gx [N, C, H, W]: each element is the sum of `gy` over the outputs whose argmax it is
 * @throws {RangeError} when `gy` or `argmax` do not have the output shape of `inputShape` with
 *   `opts`, or have the wrong dtype; also as {@link maxPool2d}.
 */
export function maxPool2dBackward(
  gy: Tensor,
  argmax: Tensor,
  inputShape: readonly number[],
  opts: Pool2dOptions,
  y?: Tensor,
): Tensor {
  const op = "maxPool2dBackward";
  const g = geometry(op, inputShape, opts);
  checkMaxBackward(op, g, gy, argmax, y);
  if (!y) return backward("max", g, inputShape, [gy.buffer, argmax.buffer]);
  if (g.S !== g.K || g.OH * g.K !== g.H || g.OW * g.K !== g.W) {
    const masked = reluBackward(y, gy);
    const gx = backward("max", g, inputShape, [masked.buffer, argmax.buffer]);
    masked.dispose();
    return gx;
  }
  const gx = Tensor.empty(inputShape);
  const rows = g.N * g.C * g.OH;
  dispatch(
    kernel("max_backward_windows_relu", g),
    [gy.buffer, argmax.buffer, gx.buffer, y.buffer],
    params(g, rows),
    groups(rows, 64),
  );
  return gx;
}

function checkMaxBackward(op: string, g: PoolGeometry, gy: Tensor, argmax: Tensor, y?: Tensor) {
  const outShape = [g.N, g.C, g.OH, g.OW];
  checkDtype(op, "gy", gy, "f32");
  checkDtype(op, "argmax", argmax, "u32");
  checkShape(op, "gy", gy.shape, outShape);
  checkShape(op, "argmax", argmax.shape, outShape);
  if (y) {
    checkDtype(op, "y", y, "f32");
    checkShape(op, "y", y.shape, outShape);
  }
}

/**
 * Whether {@link maxPool2dBackwardPrepared} can run for these pooling options: windows that do
 * not overlap (`stride >= kernelSize`), stride at most 4.
 */
export function poolWritesPrepared(opts: Pool2dOptions): boolean {
  const stride = opts.stride ?? opts.kernelSize;
  return stride >= opts.kernelSize && stride <= 4;
}

/**
 * The gradient of a ReLU fused max-pool ({@link maxPool2d} with `relu`) with respect to its
 * input, written straight into the prepared layout `l` of a convolution kernel's input (padding
 * and dilation materialised; rows that hold no input row are left unwritten): the backward pass
 * of the pool and the preparation pass of the next backward convolution in one dispatch.
 *
 * @param gy gradient of the pooled output [N, C, OH, OW]
 * @param argmax the forward pass's argmax; `y` the forward (ReLU'd) output, same shape
 * @param inputShape the pool's input shape [N, C, H, W] (= `l.planes`, `l.height`, `l.width`)
 * @param l the layout, with one column phase
 * @returns the prepared tensor `[l.planes · l.rows · l.vec4s · 4]`
 * @throws {RangeError} when shapes disagree, windows overlap or `l` has several phases.
 */
export function maxPool2dBackwardPrepared(
  gy: Tensor,
  argmax: Tensor,
  y: Tensor,
  inputShape: readonly number[],
  opts: Pool2dOptions,
  l: PreparedLayout,
): Tensor {
  const op = "maxPool2dBackwardPrepared";
  const g = geometry(op, inputShape, opts);
  checkMaxBackward(op, g, gy, argmax, y);
  if (!poolWritesPrepared(opts) || l.phases !== 1) {
    throw new RangeError(
      `${op}: needs windows that do not overlap, a stride of at most 4 and a one-phase layout`,
    );
  }
  if (l.planes !== g.N * g.C || l.height !== g.H || l.width !== g.W) {
    throw new RangeError(`${op}: layout of ${l.planes}×${l.height}×${l.width} for [${inputShape}]`);
  }
  const out = Tensor.empty([l.planes * l.rows * l.vec4s * 4]);
  const { dilation: D, padTop } = l;
  const iy0 = padTop >= 0 ? 0 : Math.ceil(-padTop / D);
  const iy1 = Math.min(l.height, Math.floor((l.rows - 1 - padTop) / D) + 1);
  const nRows = Math.max(0, iy1 - iy0);
  const bands = Math.ceil(g.H / g.S);
  const rows = l.planes * bands;
  dispatch(
    { ...kernel("max_backward_prepared", g, { D }), uniforms: PREP_PARAMS },
    [gy.buffer, argmax.buffer, out.buffer, y.buffer],
    {
      rows,
      H: g.H,
      W: g.W,
      OH: g.OH,
      OW: g.OW,
      Hq: l.rows,
      Wq4: l.vec4s,
      padT: padTop >>> 0,
      padL: l.padLeft >>> 0,
      iy0,
      nRows,
      bands,
    },
    groups(rows, 64),
  );
  return out;
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
