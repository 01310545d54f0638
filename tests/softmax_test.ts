import assert from "node:assert/strict";
import { logSoftmax, logSoftmaxBackward, softmax, softmaxBackward } from "../src/ops/softmax.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { assertClose, gpuReady, numGrad, randArray } from "./helpers.ts";

// Tolerances (GPU f32 vs float64 reference computed from the same f32 inputs):
// - softmax: atol 1e-6, rtol 1e-5 (a K-term f32 sum and one exp per element);
// - logSoftmax: atol 1e-5, rtol 1e-6 (the absolute error grows with |z - max|/tau, up to ~1e-3
//   for logits of ±1e4 at tau = 1, i.e. ~1e-7 relative);
// - backward vs central differences of the float64 forward (h = 1e-5, error ~1e-10):
//   atol 2e-6, rtol 1e-4 (the f32 forward output y feeds the backward).
const SM_TOL = { atol: 1e-6, rtol: 1e-5 };
const LSM_TOL = { atol: 1e-5, rtol: 1e-6 };
const GRAD_TOL = { atol: 2e-6, rtol: 1e-4 };

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

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const shapes: [number, number][] = [[1, 1], [1, 10], [3, 10], [37, 13], [5, 1], [70, 3]];

for (const [n, k] of shapes) {
  for (const tau of [1, 2.5, 20]) {
    Deno.test(`softmax/logSoftmax forward and backward (N=${n}, K=${k}, tau=${tau})`, async () => {
      await gpuReady;
      const z = randArray(n * k, 11 * n + k, -4, 4);
      const gy = randArray(n * k, 7 * n + k);
      const tz = Tensor.from(z, [n, k]);
      const tg = Tensor.from(gy, [n, k]);
      const o = tidy(() => {
        const y = softmax(tz, tau);
        const ly = logSoftmax(tz, tau);
        return { y, ly, gz: softmaxBackward(y, tg, tau), lgz: logSoftmaxBackward(ly, tg, tau) };
      });
      assertClose(await o.y.read(), softmaxRef(z, n, k, tau), { ...SM_TOL, label: "softmax" });
      assertClose(await o.ly.read(), logSoftmaxRef(z, n, k, tau), {
        ...LSM_TOL,
        label: "logSoftmax",
      });
      const fdS = numGrad((x) => dot(gy, softmaxRef(x, n, k, tau)), z);
      const fdL = numGrad((x) => dot(gy, logSoftmaxRef(x, n, k, tau)), z);
      assertClose(await o.gz.read(), fdS, { ...GRAD_TOL, label: "softmaxBackward" });
      assertClose(await o.lgz.read(), fdL, { ...GRAD_TOL, label: "logSoftmaxBackward" });
      for (const t of [tz, tg, o.y, o.ly, o.gz, o.lgz]) t.dispose();
    });
  }
}

Deno.test("softmax/logSoftmax stay finite and accurate for logits of ±1e4, tau 1..100", async () => {
  await gpuReady;
  const [n, k] = [37, 13];
  const z = randArray(n * k, 5, -1e4, 1e4);
  for (let j = 0; j < k; j++) z[j] = j % 2 ? 1e4 : -1e4; // an exact ±1e4 row
  const gy = randArray(n * k, 6);
  const tz = Tensor.from(z, [n, k]);
  const tg = Tensor.from(gy, [n, k]);
  for (const tau of [1, 10, 100]) {
    const o = tidy(() => {
      const y = softmax(tz, tau);
      const ly = logSoftmax(tz, tau);
      return { y, ly, gz: softmaxBackward(y, tg, tau), lgz: logSoftmaxBackward(ly, tg, tau) };
    });
    const [y, ly, gz, lgz] = await Promise.all([o.y, o.ly, o.gz, o.lgz].map((t) => t.read()));
    for (const [name, a] of [["y", y], ["ly", ly], ["gz", gz], ["lgz", lgz]] as const) {
      assert(a.every(Number.isFinite), `${name} not finite at tau=${tau}`);
    }
    assertClose(y, softmaxRef(z, n, k, tau), { ...SM_TOL, label: `softmax tau=${tau}` });
    assertClose(ly, logSoftmaxRef(z, n, k, tau), { ...LSM_TOL, label: `logSoftmax tau=${tau}` });
    for (const t of Object.values(o)) t.dispose();
  }
  tz.dispose();
  tg.dispose();
});

Deno.test("softmax ops reject bad shapes and temperatures", async () => {
  await gpuReady;
  const a = Tensor.zeros([2, 3]);
  const b = Tensor.zeros([3, 2]);
  const v = Tensor.zeros([6]);
  assert.throws(() => softmax(v), RangeError);
  assert.throws(() => softmax(a, 0), RangeError);
  assert.throws(() => logSoftmax(a, -1), RangeError);
  assert.throws(() => softmax(a, Infinity), RangeError);
  assert.throws(() => softmaxBackward(a, b), RangeError);
  assert.throws(() => logSoftmaxBackward(a, v), RangeError);
  for (const t of [a, b, v]) t.dispose();
});
