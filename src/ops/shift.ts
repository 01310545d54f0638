/**
 * Circular image shifts with optional horizontal flip (synthesis jitter), and their inverse.
 *
 * @module
 */

import src from "../../kernels/shift.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkRank4 } from "./_checks.ts";

const SHIFT = {
  name: "shift2d",
  code: src,
  uniforms: uniformLayout("Params", [
    ["n", "u32"],
    ["h", "u32"],
    ["w", "u32"],
    ["ay", "u32"],
    ["ax", "u32"],
    ["flip", "u32"],
  ]),
};

const mod = (a: number, m: number) => ((a % m) + m) % m;

/**
 * `out[n, c, y, x] = x[n, c, (y − dy) mod H, (x' − dx) mod W]` with `x' = W−1−x` when `flip`:
 * the image moved down by `dy` and right by `dx` (wrapping around), after an optional mirror.
 * x: [N, C, H, W] → same shape.
 *
 * @throws {RangeError} when x is not 4-D.
 */
export function shift2d(x: Tensor, dy: number, dx: number, flip = false): Tensor {
  checkRank4("shift2d", "x", x.shape, true);
  const [, , h, w] = x.shape;
  return gather(x, h, w, mod(-dy, h), mod(-dx, w), flip);
}

/**
 * The backward pass of {@link shift2d}: its inverse permutation applied to `gy` ([N, C, H, W]).
 *
 * @throws {RangeError} when gy is not 4-D.
 */
export function shift2dBackward(gy: Tensor, dy: number, dx: number, flip = false): Tensor {
  checkRank4("shift2dBackward", "gy", gy.shape, true);
  const [, , h, w] = gy.shape;
  // Forward gathers at (y + ay, f(x) + ax); the inverse gathers at (y − ay, x − ax) without flip
  // and at (y − ay, W−1−x + ax) with flip (an involution in x).
  return gather(gy, h, w, mod(dy, h), flip ? mod(-dx, w) : mod(dx, w), flip);
}

function gather(x: Tensor, h: number, w: number, ay: number, ax: number, flip: boolean): Tensor {
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  dispatch(
    SHIFT,
    [x.buffer, out.buffer],
    { n: x.size, h, w, ay, ax, flip: flip ? 1 : 0 },
    groups(x.size, 256),
  );
  return out;
}
