/**
 * The sum of a matrix over its first axis, {@link sumCols} (`[M, N] → [N]`, e.g. bias
 * gradients). Long axes are summed in chunks of 256 over several passes, which keeps every pass
 * parallel and the rounding error small.
 *
 * @module
 */

import src from "../../kernels/reduce.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkMatrix } from "./_checks.ts";

const SUM_CHUNKS = {
  name: "reduce.sum_chunks",
  code: src,
  entryPoint: "sum_chunks",
  uniforms: uniformLayout("Params", [
    ["A", "u32"],
    ["L", "u32"],
    ["B", "u32"],
    ["R", "u32"],
    ["G", "u32"],
  ]),
};

/** Longest run summed by one invocation. */
const CHUNK = 256;

/** Sums `x` viewed as `[a, l, b]` over `l`; returns a new `[a·b]` tensor. */
function sumAxis(x: Tensor, a: number, l: number, b: number): Tensor {
  if (a * b === 0) return Tensor.empty([0]);
  if (l === 0) return Tensor.zeros([a * b]);
  let cur = x;
  let len = l;
  for (;;) {
    const r = Math.min(len, CHUNK);
    const g = Math.ceil(len / r);
    const out = Tensor.empty(g === 1 ? [a * b] : [a, g, b]);
    dispatch(
      SUM_CHUNKS,
      [cur.buffer, out.buffer],
      { A: a, L: len, B: b, R: r, G: g },
      groups(a * g * b, 256),
    );
    if (cur !== x) cur.dispose();
    if (g === 1) return out;
    cur = out;
    len = g;
  }
}

/**
 * Sum over the first axis (bias gradients: `db = Σ_rows gy`).
 *
 * @param x `[M, N]`, f32.
 * @returns `[N]`; zeros when M is 0.
 * @throws {RangeError} when `x` is not a 2-D f32 matrix.
 */
export function sumCols(x: Tensor): Tensor {
  const [m, n] = checkMatrix("sumCols", "x", x);
  return sumAxis(x, 1, m, n);
}
