/**
 * The shared argument checks of the ops: RangeErrors that name the op, the argument and the
 * shapes.
 */

import { throws } from "node:assert/strict";
import { gpuReady } from "./helpers.ts";
import { Tensor } from "../src/tensor.ts";
import { matmul } from "../src/ops/matmul.ts";
import { softmax } from "../src/ops/softmax.ts";
import { klDivLoss } from "../src/ops/loss.ts";
import { sumCols } from "../src/ops/reduce.ts";
import { argmax } from "../src/ops/metrics.ts";

/** Asserts that `f` throws a RangeError whose message contains `text`. */
function throwsRange(f: () => unknown, text: string): void {
  throws(f, (e: unknown) => e instanceof RangeError && e.message.includes(text));
}

Deno.test("matrix checks name the op, the argument and the shape", async () => {
  await gpuReady;
  const v = Tensor.zeros([6]);
  const m = Tensor.zeros([2, 3]);
  const u = Tensor.zeros([2, 3], "u32");
  const empty = Tensor.zeros([0, 3]);
  throwsRange(() => matmul(v, m), "matmul: A must be a 2-D f32 [M, N] matrix, got f32 [6]");
  throwsRange(
    () => sumCols(u),
    "sumCols: x must be a 2-D f32 [M, N] matrix, got u32 [2,3]",
  );
  throwsRange(() => softmax(empty), "softmax: z must be a non-empty 2-D f32 [N, K] matrix");
  throwsRange(() => argmax(v), "argmax: z must be a non-empty 2-D f32 [N, K] matrix");
  throwsRange(
    () => klDivLoss(m, Tensor.zeros([3, 2]), 1),
    "klDivLoss: p [2,3] and z [3,2] differ in shape",
  );
  for (const t of [v, m, u, empty]) t.dispose();
});
