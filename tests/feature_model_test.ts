import assert from "node:assert/strict";
import {
  buildFeatureModel,
  cholesky,
  cosineCorrelation,
  sampleFeatures,
} from "../src/dfkd/feature_model.ts";
import { Rng } from "../src/random.ts";
import { assertNear, randArray } from "./helpers.ts";

Deno.test("R is the cosine similarity of the incoming weight vectors", () => {
  const w = Float32Array.from([1, 0, 0, 2, 1, 1]); // rows (1,0), (0,2), (1,1)
  const r = cosineCorrelation(w, 3, 2);
  const expected = [1, 0, Math.SQRT1_2, 0, 1, Math.SQRT1_2, Math.SQRT1_2, Math.SQRT1_2, 1];
  expected.forEach((e, i) => assertNear(r[i], e, 1e-7));
});

Deno.test("jittered Cholesky copes with a singular (rank-deficient) R", () => {
  // 6 units with 3 inputs: R has rank 3, so plain Cholesky fails and jitter is needed.
  const w = randArray(6 * 3, 3);
  const r = cosineCorrelation(w, 6, 3);
  const fm = buildFeatureModel("fc", w, 6, 3, 1.5);
  assert(fm.jitter > 0);
  // L Lᵀ reproduces R + εI.
  const l = fm.cholesky;
  for (let i = 0; i < 6; i++) {
    for (let j = 0; j < 6; j++) {
      let s = 0;
      for (let t = 0; t < 6; t++) s += l[i * 6 + t] * l[j * 6 + t];
      assertNear(s, r[i * 6 + j] + (i === j ? fm.jitter : 0), 1e-9);
    }
  }
  assert(cholesky(r, 6, 0) === null || fm.jitter === 0);
});

Deno.test("samples have covariance σ²R (Monte Carlo, 20,000 draws)", () => {
  const w = randArray(4 * 10, 7);
  const sigma = 1.5;
  const fm = buildFeatureModel("fc", w, 4, 10, sigma);
  const n = 20000;
  const s = sampleFeatures(fm, n, new Rng(1));
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      let c = 0;
      for (let t = 0; t < n; t++) c += s[t * 4 + i] * s[t * 4 + j];
      // Tolerance: a few standard errors of a covariance estimate (σ²·√(2/n) ≈ 0.02).
      assertNear(c / n, sigma * sigma * fm.correlation[i * 4 + j], 0.08, `cov[${i},${j}]`);
    }
  }
});

Deno.test("a non-positive sigma is rejected", () => {
  assert.throws(() => buildFeatureModel("fc", randArray(4, 1), 2, 2, 0), RangeError);
  assert.throws(() => buildFeatureModel("fc", randArray(4, 1), 2, 2, NaN), RangeError);
});
