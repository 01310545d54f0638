import assert from "node:assert/strict";
import { softmax } from "../src/ops/softmax.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerance (GPU f32 vs a float64 reference computed from the same f32 inputs): atol 1e-6,
// rtol 1e-5 (a K-term f32 sum and one exp per element).
const SM_TOL = { atol: 1e-6, rtol: 1e-5 };

function logSoftmaxRef(z: ArrayLike<number>, n: number, k: number, tau: number): Float64Array {
  const out = new Float64Array(n * k);
  for (let r = 0; r < n; r++) {
    let m = -Infinity;
    for (let j = 0; j < k; j++) m = Math.max(m, z[r * k + j] / tau);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(z[r * k + j] / tau - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < k; j++) out[r * k + j] = z[r * k + j] / tau - lse;
  }
  return out;
}

function softmaxRef(z: ArrayLike<number>, n: number, k: number, tau: number): Float64Array {
  return logSoftmaxRef(z, n, k, tau).map(Math.exp);
}

const shapes: [number, number][] = [[1, 1], [1, 10], [3, 10], [37, 13], [5, 1], [70, 3]];

for (const [n, k] of shapes) {
  for (const tau of [1, 2.5, 20]) {
    Deno.test(`softmax matches a float64 reference (N=${n}, K=${k}, tau=${tau})`, async () => {
      await gpuReady;
      const z = randArray(n * k, 11 * n + k, -4, 4);
      const tz = Tensor.from(z, [n, k]);
      const y = softmax(tz, tau);
      assertClose(await y.read(), softmaxRef(z, n, k, tau), { ...SM_TOL, label: "softmax" });
      tz.dispose();
      y.dispose();
    });
  }
}

Deno.test("softmax stays finite and accurate for logits of ±1e4, tau 1..100", async () => {
  await gpuReady;
  const [n, k] = [37, 13];
  const z = randArray(n * k, 5, -1e4, 1e4);
  for (let j = 0; j < k; j++) z[j] = j % 2 ? 1e4 : -1e4; // an exact ±1e4 row
  const tz = Tensor.from(z, [n, k]);
  for (const tau of [1, 10, 100]) {
    const t = softmax(tz, tau);
    const y = await t.read();
    assert(y.every(Number.isFinite), `softmax not finite at tau=${tau}`);
    assertClose(y, softmaxRef(z, n, k, tau), { ...SM_TOL, label: `softmax tau=${tau}` });
    t.dispose();
  }
  tz.dispose();
});

Deno.test("softmax rejects bad shapes and temperatures", async () => {
  await gpuReady;
  const a = Tensor.zeros([2, 3]);
  const v = Tensor.zeros([6]);
  assert.throws(() => softmax(v), RangeError);
  assert.throws(() => softmax(a, 0), RangeError);
  assert.throws(() => softmax(a, -1), RangeError);
  assert.throws(() => softmax(a, Infinity), RangeError);
  for (const t of [a, v]) t.dispose();
});
