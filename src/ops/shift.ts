/**
 * Circular image shifts with optional horizontal flip (synthesis jitter), and their inverse: one
 * shift for the whole batch ({@link shift2d}), or one per image ({@link shift2dPerImage}).
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

const SHIFT_PER_IMAGE = { ...SHIFT, name: "shift2d.per_image", entryPoint: "per_image" };

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

/** The shift of one image: down by `dy`, right by `dx` (wrapping), after a mirror when `flip`. */
export interface ImageShift {
  /** Rows down (any integer; taken mod H). */
  dy: number;
  /** Columns right (any integer; taken mod W). */
  dx: number;
  /** Mirror the columns first. */
  flip: boolean;
}

/**
 * {@link shift2d} with each image's own shift: image `n` of x ([N, C, H, W]) is moved by
 * `shifts[n]`. One dispatch; the offsets travel in a small `[N, 3]` u32 buffer.
 *
 * @throws {RangeError} when x is not 4-D or `shifts` does not hold one shift per image.
 */
export function shift2dPerImage(x: Tensor, shifts: readonly ImageShift[]): Tensor {
  checkRank4("shift2dPerImage", "x", x.shape, true);
  const [, , h, w] = x.shape;
  return gatherPerImage(x, shifts, (s) => [mod(-s.dy, h), mod(-s.dx, w)]);
}

/**
 * The backward pass of {@link shift2dPerImage}: each image's inverse permutation applied to `gy`
 * ([N, C, H, W]).
 *
 * @throws {RangeError} when gy is not 4-D or `shifts` does not hold one shift per image.
 */
export function shift2dPerImageBackward(gy: Tensor, shifts: readonly ImageShift[]): Tensor {
  checkRank4("shift2dPerImageBackward", "gy", gy.shape, true);
  const [, , h, w] = gy.shape;
  return gatherPerImage(gy, shifts, (s) => inverseOffsets(s, h, w));
}

/**
 * The gather offsets `[ay, ax]` (reduced mod H and W) of the inverse of shift `s` on `h × w`
 * images: the inverse moves pixel (y, x) of the shifted image back from (y + ay, f(x) + ax),
 * `f(x) = W − 1 − x` when `s.flip` (an involution in x). Shared with the fused Adam step that
 * takes the jitter's backward pass (`adamTvJitterStep`).
 */
export function inverseOffsets(s: ImageShift, h: number, w: number): [number, number] {
  return [mod(s.dy, h), s.flip ? mod(-s.dx, w) : mod(s.dx, w)];
}

function gatherPerImage(
  x: Tensor,
  shifts: readonly ImageShift[],
  offsets: (s: ImageShift) => [number, number],
): Tensor {
  const [n, c, h, w] = x.shape;
  if (shifts.length !== n) {
    throw new RangeError(`shift2dPerImage: ${shifts.length} shifts for ${n} images`);
  }
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  const offs = new Uint32Array(3 * n);
  shifts.forEach((s, i) => {
    const [ay, ax] = offsets(s);
    offs.set([ay, ax, s.flip ? 1 : 0], 3 * i);
  });
  const t = Tensor.from(offs, [n, 3]);
  dispatch(
    SHIFT_PER_IMAGE,
    [x.buffer, out.buffer, t.buffer],
    { n: x.size, h, w, ay: c * h * w, ax: 0, flip: 0 },
    groups(x.size, 256),
  );
  t.dispose(); // queued work keeps its order; the pool may hand the buffer out again safely
  return out;
}
