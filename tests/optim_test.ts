import assert from "node:assert/strict";
import {
  type AdamOptions,
  adamStep,
  scaleByScalar,
  type SgdOptions,
  sgdStep,
  signStep,
} from "../src/ops/optim.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerances: each step is a handful of f32 operations per element; over 6 steps the GPU
// parameters stay within atol 1e-6 + rtol 1e-5 of the float64 reference that starts from the same
// f32 values (Adam moves each element by at most ~lr per step, so errors are relative to lr);
// m, v (Adam) and the velocity (SGD) within rtol 1e-5 + atol 2e-6: they are running sums of
// gradients up to 2 in size that may cancel, so their error is absolute (~eps · Σ|terms|);
// scaleByScalar rtol 1e-6.
const P_TOL = { atol: 1e-6, rtol: 1e-5 };
const S_TOL = { atol: 2e-6, rtol: 1e-5 };
const STEPS = 6;

function adamRef(
  w: Float64Array,
  m: Float64Array,
  v: Float64Array,
  g: ArrayLike<number>,
  t: number,
  o: AdamOptions,
): void {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = o;
  const lo = o.clampMin ?? -Infinity;
  const hi = o.clampMax ?? Infinity;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i] + weightDecay * w[i];
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    const mh = m[i] / (1 - beta1 ** t);
    const vh = v[i] / (1 - beta2 ** t);
    w[i] = Math.min(hi, Math.max(lo, w[i] - lr * mh / (Math.sqrt(vh) + eps)));
  }
}

function sgdRef(w: Float64Array, u: Float64Array, g: ArrayLike<number>, o: SgdOptions): void {
  const { lr, momentum = 0, weightDecay = 0, nesterov = false } = o;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i] + weightDecay * w[i];
    u[i] = momentum * u[i] + gi;
    w[i] -= lr * (nesterov ? gi + momentum * u[i] : u[i]);
  }
}

const adamCases: [string, AdamOptions][] = [
  ["defaults", { lr: 1e-3 }],
  ["weight decay + clamp", { lr: 0.05, weightDecay: 0.01, clampMin: -0.5, clampMax: 0.5 }],
  ["custom betas, clamp below only", { lr: 0.01, beta1: 0.5, beta2: 0.9, eps: 1e-6, clampMin: 0 }],
];

for (const n of [1, 1037, 1024]) {
  for (const [name, opts] of adamCases) {
    Deno.test(`adamStep matches float64 over ${STEPS} steps (n=${n}, ${name})`, async () => {
      await gpuReady;
      const w0 = randArray(n, n + 1);
      const [tw, tm, tv] = [Tensor.from(w0), Tensor.zeros([n]), Tensor.zeros([n])];
      const w = Float64Array.from(w0);
      const m = new Float64Array(n);
      const v = new Float64Array(n);
      for (let t = 1; t <= STEPS; t++) {
        const g = randArray(n, 100 * t + n, -2, 2);
        if (n > 10) g.fill(0, 0, 10); // zero gradients: m = v = 0 must not divide by zero
        const tg = Tensor.from(g);
        adamStep(tw, tg, tm, tv, t, opts);
        tg.dispose();
        adamRef(w, m, v, g, t, opts);
      }
      assertClose(await tw.read(), w, { ...P_TOL, label: "param" });
      assertClose(await tm.read(), m, { ...S_TOL, label: "m" });
      assertClose(await tv.read(), v, { ...S_TOL, label: "v" });
      for (const x of [tw, tm, tv]) x.dispose();
    });
  }
}

const sgdCases: [string, SgdOptions][] = [
  ["plain", { lr: 0.1 }],
  ["momentum + weight decay", { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 }],
  ["nesterov", { lr: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: true }],
];

for (const n of [1, 1037]) {
  for (const [name, opts] of sgdCases) {
    Deno.test(`sgdStep matches float64 over ${STEPS} steps (n=${n}, ${name})`, async () => {
      await gpuReady;
      const w0 = randArray(n, n + 2);
      const [tw, tu] = [Tensor.from(w0), Tensor.zeros([n])];
      const w = Float64Array.from(w0);
      const u = new Float64Array(n);
      for (let t = 1; t <= STEPS; t++) {
        const g = randArray(n, 200 * t + n, -2, 2);
        const tg = Tensor.from(g);
        sgdStep(tw, tg, tu, opts);
        tg.dispose();
        sgdRef(w, u, g, opts);
      }
      assertClose(await tw.read(), w, { ...P_TOL, label: "param" });
      assertClose(await tu.read(), u, { ...S_TOL, label: "velocity" });
      tw.dispose();
      tu.dispose();
    });
  }
}

Deno.test("scaleByScalar multiplies by a GPU scalar and a constant", async () => {
  await gpuReady;
  const x = randArray(37 * 13, 4);
  const tx = Tensor.from(x, [37, 13]);
  const ts = Tensor.scalar(2.5);
  const out = scaleByScalar(tx, ts, -0.3);
  assert.deepEqual(out.shape, [37, 13]);
  const expect = Float64Array.from(x, (v) => v * 2.5 * -0.3);
  assertClose(await out.read(), expect, { atol: 1e-7, rtol: 1e-6, label: "scaleByScalar" });
  assertClose(await tx.read(), x, { atol: 0, rtol: 0, label: "x unchanged" });
  const self = scaleByScalar(ts, ts, 2); // x and s share a buffer
  assertClose(await self.read(), [12.5], { atol: 0, rtol: 1e-6, label: "s * s * 2" });
  for (const t of [tx, ts, out, self]) t.dispose();
});

Deno.test("optimizers reject mismatched, aliased or invalid arguments", async () => {
  await gpuReady;
  const [a, b, c, d] = [0, 1, 2, 3].map(() => Tensor.zeros([4]));
  const e = Tensor.zeros([5]);
  const u = Tensor.zeros([4], "u32");
  assert.throws(() => adamStep(a, b, c, e, 1, { lr: 1 }), RangeError);
  assert.throws(() => adamStep(a, b, c, c, 1, { lr: 1 }), RangeError);
  assert.throws(() => adamStep(a, b, c, d, 0, { lr: 1 }), RangeError);
  assert.throws(() => adamStep(a, b, c, d, 1.5, { lr: 1 }), RangeError);
  assert.throws(() => adamStep(a, b, c, d, 1, { lr: 1, beta1: 1 }), RangeError);
  assert.throws(() => adamStep(a, b, c, d, 1, { lr: 1, clampMin: 1, clampMax: 0 }), RangeError);
  assert.throws(() => adamStep(a, u, c, d, 1, { lr: 1 }), RangeError);
  assert.throws(() => sgdStep(a, b, e, { lr: 1 }), RangeError);
  assert.throws(() => sgdStep(a, b, a, { lr: 1 }), RangeError);
  assert.throws(() => sgdStep(a, b, c, { lr: 1, nesterov: true }), RangeError);
  assert.throws(() => sgdStep(a, b, c, { lr: NaN }), RangeError);
  assert.throws(() => scaleByScalar(a, b), RangeError);
  for (const t of [a, b, c, d, e, u]) t.dispose();
});

Deno.test("signStep matches float64 (sign of zero is zero; clamp optional)", async () => {
  await gpuReady;
  const n = 1037;
  const x0 = randArray(n, 11);
  const g = randArray(n, 12, -1, 1);
  for (let i = 0; i < n; i += 7) g[i] = 0;
  const cases: [number, number, number][] = [[0.05, 0, 1], [-0.3, -Infinity, Infinity], [
    0.2,
    0.1,
    Infinity,
  ]];
  for (const [step, lo, hi] of cases) {
    const [tx, tg] = [Tensor.from(x0), Tensor.from(g)];
    signStep(tx, tg, step, lo, hi);
    const expect = Float64Array.from(
      x0,
      (v, i) => Math.min(hi, Math.max(lo, v + step * Math.sign(g[i]))),
    );
    assertClose(await tx.read(), expect, { atol: 1e-7, rtol: 1e-6, label: `signStep ${step}` });
    tx.dispose();
    tg.dispose();
  }
  const [a, b, e] = [Tensor.zeros([4]), Tensor.zeros([4]), Tensor.zeros([5])];
  assert.throws(() => signStep(a, e, 0.1), RangeError);
  assert.throws(() => signStep(a, a, 0.1), RangeError);
  assert.throws(() => signStep(a, b, NaN), RangeError);
  assert.throws(() => signStep(a, b, 0.1, 1, 0), RangeError);
  for (const t of [a, b, e]) t.dispose();
});
