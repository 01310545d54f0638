/**
 * Classification metrics on the GPU: row argmax, the number of correct rows per batch, and an
 * in-place accumulator so that counts and losses add up over batches with one readback at the end.
 *
 * @module
 */

import src from "../../kernels/metrics.wgsl" with { type: "text" };
import reduceSrc from "../../kernels/loss_reduce.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkDtype, checkLabels, checkMatrix, checkSameSize } from "./_checks.ts";

/** `struct Params` of kernels/metrics.wgsl. */
const PARAMS = uniformLayout("Params", [["n", "u32"], ["k", "u32"]]);
/** `struct Params` of kernels/loss_reduce.wgsl. */
const REDUCE_PARAMS = uniformLayout("Params", [["n", "u32"], ["scale", "f32"]]);

const ARGMAX = { name: "metrics.argmax", code: src, entryPoint: "argmax", uniforms: PARAMS };
const CORRECT_ROWS = {
  name: "metrics.correct_rows",
  code: src,
  entryPoint: "correct_rows",
  uniforms: PARAMS,
};
const SUM = {
  name: "loss_reduce.sum",
  code: reduceSrc,
  entryPoint: "sum",
  uniforms: REDUCE_PARAMS,
};
const ACCUMULATE = {
  name: "loss_reduce.accumulate",
  code: reduceSrc,
  entryPoint: "accumulate",
  uniforms: REDUCE_PARAMS,
};

/** Rows per workgroup of the metric kernels. */
const ROWS = 64;

/**
 * Row argmax (the first maximum on ties).
 *
 * @param z logits `[N, K]`, f32.
 * @returns class indices `[N]`, u32.
 * @throws {RangeError} when `z` is not a non-empty f32 `[N, K]` matrix.
 */
export function argmax(z: Tensor): Tensor {
  const [n, k] = checkMatrix("argmax", "z", z, true);
  const out = Tensor.empty([n], "u32");
  dispatch(ARGMAX, [z.buffer, out.buffer], { n, k }, groups(n, ROWS));
  return out;
}

/**
 * Number of rows whose argmax (first maximum on ties) equals the label, as an f32 `[1]` tensor
 * on the GPU (exact below 2^24 rows).
 *
 * @param z logits `[N, K]`, f32.
 * @param labels class indices `[N]`, u32.
 * @returns the count, `[1]` f32.
 * @throws {RangeError} when `z` is not a non-empty f32 `[N, K]` matrix or `labels` is not a u32
 * `[N]` vector.
 */
export function correctCount(z: Tensor, labels: Tensor): Tensor {
  const [n, k] = checkMatrix("correctCount", "z", z, true);
  checkLabels("correctCount", labels, z, n);
  const hits = Tensor.empty([n]);
  dispatch(CORRECT_ROWS, [z.buffer, labels.buffer, hits.buffer], { n, k }, groups(n, ROWS));
  const count = Tensor.empty([1]);
  dispatch(SUM, [hits.buffer, count.buffer], { n, scale: 1 }, 1);
  hits.dispose();
  return count;
}

/**
 * Adds `src` into `acc` in place (`acc[i] += src[i]`), e.g. a running correct count or loss
 * total over batches.
 *
 * @param acc f32 accumulator, updated in place.
 * @param src f32 tensor of the same element count.
 * @throws {RangeError} when the element counts differ, either is not f32, or both are the same
 * buffer.
 */
export function accumulate(acc: Tensor, src: Tensor): void {
  checkDtype("accumulate", "acc", acc);
  checkDtype("accumulate", "src", src);
  checkSameSize("accumulate", "acc", acc, "src", src);
  if (acc.buffer === src.buffer) throw new RangeError("accumulate: acc and src share one buffer");
  if (acc.size === 0) return;
  dispatch(
    ACCUMULATE,
    [src.buffer, acc.buffer],
    { n: acc.size, scale: 0 },
    groups(acc.size, 256),
  );
}
