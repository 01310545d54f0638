import assert from "node:assert/strict";
import { mixBatch } from "../src/dfkd/distill.ts";
import { Rng } from "../src/random.ts";

Deno.test("mixBatch makes each image a convex mix of itself and one batch partner", () => {
  const n = 5;
  const per = 7;
  const batch = new Float32Array(n * per);
  // Image i holds i + k / 10 at element k: two images and λ are recoverable from any mix.
  for (let i = 0; i < n; i++) for (let k = 0; k < per; k++) batch[i * per + k] = i + k / 10;
  const src = batch.slice();
  mixBatch(batch, n, per, new Rng(3));
  let mixed = 0;
  for (let i = 0; i < n; i++) {
    const row = batch.subarray(i * per, (i + 1) * per);
    // The offset k/10 is shared by both images, so row[k] − k/10 is the same for every k.
    const level = row[0];
    for (let k = 0; k < per; k++) assert.ok(Math.abs(row[k] - k / 10 - level) < 1e-5);
    // level = λ·i + (1 − λ)·j with j in the batch: it lies in [0, n − 1].
    assert.ok(level >= -1e-6 && level <= n - 1 + 1e-6, `level ${level}`);
    if (Math.abs(level - i) > 1e-3) mixed++;
  }
  assert.ok(mixed >= 2, `only ${mixed} of ${n} images changed`);
  // Deterministic for a seed.
  const again = src.slice();
  mixBatch(again, n, per, new Rng(3));
  assert.deepEqual(again, batch);
  // A reused scratch buffer gives the same mix.
  const reused = src.slice();
  mixBatch(reused, n, per, new Rng(3), new Float32Array(n * per + 3));
  assert.deepEqual(reused, batch);
  assert.throws(() => mixBatch(new Float32Array(3), 1, 4, new Rng(0)), RangeError);
  assert.throws(() => mixBatch(src.slice(), n, per, new Rng(0), new Float32Array(4)), RangeError);
});
