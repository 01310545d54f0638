import assert from "node:assert/strict";
import { accumulate, argmax, correctCount } from "../src/ops/metrics.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, rng } from "./helpers.ts";

// Tolerance: argmax and counts are exact (integers; f32 counts are exact below 2^24);
// accumulate adds two f32 values once per call: rtol 1e-6 vs float64.

/** Logits with many ties: small integers in [0, 3). */
function tiedLogits(n: number, k: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n * k }, () => Math.floor(r() * 3));
}

function argmaxRef(z: ArrayLike<number>, n: number, k: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (z[i * k + j] > z[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

for (const [n, k] of [[1, 1], [1, 10], [37, 13], [10_000, 10], [65, 3]] as [number, number][]) {
  Deno.test(`argmax and correctCount match the CPU (N=${n}, K=${k})`, async () => {
    await gpuReady;
    const z = tiedLogits(n, k, n + k);
    const r = rng(n * k);
    const labels = Uint32Array.from({ length: n }, () => Math.floor(r() * k));
    const [tz, tl] = [Tensor.from(z, [n, k]), Tensor.from(labels)];
    const idx = argmax(tz);
    const count = correctCount(tz, tl);
    assert.equal(idx.dtype, "u32");
    assert.deepEqual(idx.shape, [n]);
    assert.deepEqual(count.shape, [1]);
    const ref = argmaxRef(z, n, k);
    assert.deepEqual(await idx.readU32(), ref);
    const expected = labels.filter((l, i) => l === ref[i]).length;
    assert.equal((await count.read())[0], expected);
    for (const t of [tz, tl, idx, count]) t.dispose();
  });
}

Deno.test("argmax picks the first maximum of a row", async () => {
  await gpuReady;
  const tz = Tensor.from([1, 5, 5, 2, -3, -3, -3, -7], [2, 4]);
  const idx = argmax(tz);
  assert.deepEqual([...await idx.readU32()], [1, 0]);
  tz.dispose();
  idx.dispose();
});

Deno.test("accumulate sums counts and losses over batches on the GPU", async () => {
  await gpuReady;
  const acc = Tensor.zeros([1]);
  const [n, k] = [37, 13];
  let expected = 0;
  for (let b = 0; b < 5; b++) {
    const z = tiedLogits(n, k, 100 + b);
    const r = rng(b);
    const labels = Uint32Array.from({ length: n }, () => Math.floor(r() * k));
    const ref = argmaxRef(z, n, k);
    expected += labels.filter((l, i) => l === ref[i]).length;
    const [tz, tl] = [Tensor.from(z, [n, k]), Tensor.from(labels)];
    const c = correctCount(tz, tl);
    accumulate(acc, c);
    for (const t of [tz, tl, c]) t.dispose();
  }
  assert.equal((await acc.read())[0], expected);

  const v = Tensor.from([0.5, -1.25, 3, 1e-3, 7]);
  const w = Tensor.from([0.25, 2, -3, 1e-3, 1e6]);
  accumulate(v, w);
  assertClose(await v.read(), [0.75, 0.75, 0, 2e-3, 1e6 + 7], { atol: 0, rtol: 1e-6 });
  for (const t of [acc, v, w]) t.dispose();
});

Deno.test("metrics reject bad shapes and dtypes", async () => {
  await gpuReady;
  const z = Tensor.zeros([3, 4]);
  const v = Tensor.zeros([12]);
  const lab = Tensor.from(new Uint32Array([0, 1, 2]));
  const labF = Tensor.zeros([3]);
  const lab2 = Tensor.from(new Uint32Array([0, 1]));
  const one = Tensor.zeros([1]);
  const zu = Tensor.from(new Uint32Array(4), [2, 2]);
  assert.throws(() => argmax(v), RangeError);
  assert.throws(() => argmax(zu), RangeError);
  assert.throws(() => correctCount(z, labF), RangeError);
  assert.throws(() => correctCount(z, lab2), RangeError);
  assert.throws(() => accumulate(one, lab), RangeError);
  assert.throws(() => accumulate(one, v), RangeError);
  assert.throws(() => accumulate(one, one), RangeError);
  for (const t of [z, v, lab, labF, lab2, one, zu]) t.dispose();
});
