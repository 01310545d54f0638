/**
 * Bilinear upsampling of NCHW images by an integer factor (half-pixel centres, as PyTorch's
 * `interpolate(mode="bilinear", align_corners=False)`), and its adjoint for the backward pass.
 * Synthesis uses it to optimise the pixels at a lower resolution than the teacher's input.
 *
 * @module
 */

import src from "../../kernels/upsample.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkRank4 } from "./_checks.ts";

const UNIFORMS = uniformLayout("Params", [["total", "u32"], ["h", "u32"], ["w", "u32"]]);

function kernel(entryPoint: "forward" | "backward", factor: number) {
  return {
    name: `upsample.${entryPoint}`,
    code: src,
    entryPoint,
    constants: { F: factor },
    uniforms: UNIFORMS,
  };
}

/** Queues `entryPoint` from `from` into a new `[n, c, ..out]` tensor over the `h × w` input grid. */
function run(
  entryPoint: "forward" | "backward",
  factor: number,
  from: Tensor,
  shape: number[],
  [h, w]: readonly number[],
): Tensor {
  const out = Tensor.empty(shape);
  if (out.size === 0) return out;
  const k = kernel(entryPoint, factor);
  dispatch(k, [from.buffer, out.buffer], { total: out.size, h, w }, groups(out.size, 256));
  return out;
}

function checkFactor(op: string, factor: number): void {
  if (!Number.isInteger(factor) || factor < 1 || factor > 16) {
    throw new RangeError(`${op}: factor must be an integer in [1, 16], got ${factor}`);
  }
}

/**
 * `y = U_F x`: x [N, C, h, w] → y [N, C, h·F, w·F], each output the bilinear interpolation of
 * the input at `s = max((o + 0.5)/F − 0.5, 0)` along each axis (taps clamped to the last row and
 * column). The weights of each output are non-negative and sum to 1, so y stays in the range of x.
 *
 * @throws {RangeError} when x is not 4-D or `factor` is not an integer in [1, 16].
 */
export function upsampleBilinear(x: Tensor, factor: number): Tensor {
  checkRank4("upsampleBilinear", "x", x.shape, true);
  checkFactor("upsampleBilinear", factor);
  const [n, c, h, w] = x.shape;
  return run("forward", factor, x, [n, c, h * factor, w * factor], [h, w]);
}

/**
 * The adjoint `gx = U_Fᵀ gy` of {@link upsampleBilinear}, its backward pass: gy [N, C, h·F, w·F]
 * → gx [N, C, h, w], each input element the sum of the output gradients weighted by its weight in
 * each output.
 *
 * @throws {RangeError} when gy is not 4-D, `factor` is not an integer in [1, 16], or gy's height
 *   or width is not a multiple of `factor`.
 */
export function upsampleBilinearBackward(gy: Tensor, factor: number): Tensor {
  checkRank4("upsampleBilinearBackward", "gy", gy.shape, true);
  checkFactor("upsampleBilinearBackward", factor);
  const [n, c, hh, ww] = gy.shape;
  if (hh % factor !== 0 || ww % factor !== 0) {
    throw new RangeError(
      `upsampleBilinearBackward: gy's height and width must be multiples of ${factor}, got [${gy.shape}]`,
    );
  }
  const [h, w] = [hh / factor, ww / factor];
  return run("backward", factor, gy, [n, c, h, w], [h, w]);
}
