import assert from "node:assert/strict";
import { KdBatches } from "../src/dfkd/kd_batches.ts";
import { BatchDraws, gatherAugmented } from "../src/ops/augment.ts";
import { Rng } from "../src/random.ts";
import { Tensor } from "../src/tensor.ts";
import { gpuReady, randArray } from "./helpers.ts";

/** Float64 reference of kernels/augment.wgsl for one batch. */
function reference(
  src: Float32Array,
  chw: [number, number, number],
  draws: { k: number; dy: number; dx: number; flip: boolean; j: number; lambda: number }[],
  mix: boolean,
): Float64Array {
  const [c, h, w] = chw;
  const per = c * h * w;
  const aug = (i: number, e: number) => {
    const d = draws[i];
    const x = e % w, y = Math.floor(e / w) % h, plane = Math.floor(e / (w * h));
    const sy = y - d.dy;
    const sx0 = x - d.dx;
    const sx = d.flip ? w - 1 - sx0 : sx0;
    if (sy < 0 || sy >= h || sx < 0 || sx >= w) return 0;
    return src[d.k * per + (plane * h + sy) * w + sx];
  };
  const out = new Float64Array(draws.length * per);
  for (let i = 0; i < draws.length; i++) {
    for (let e = 0; e < per; e++) {
      const a = aug(i, e);
      const l = draws[i].lambda;
      out[i * per + e] = mix ? l * a + (1 - l) * aug(draws[i].j, e) : a;
    }
  }
  return out;
}

Deno.test("gatherAugmented gathers, shifts, mirrors and mixes as the float64 reference", async () => {
  await gpuReady;
  const chw: [number, number, number] = [2, 5, 6];
  const count = 9;
  const per = 60;
  const src = randArray(count * per, 11, 0, 1);
  const images = Tensor.from(src, [count, ...chw]);
  const rng = new Rng(4);
  const n = 7;
  const plain = Array.from({ length: n }, () => ({
    k: rng.int(count),
    dy: rng.int(5) - 2,
    dx: rng.int(5) - 2,
    flip: rng.uniform() < 0.5,
    j: 0,
    lambda: 1,
  }));
  plain[0].dy = 2; // every edge case: the largest shifts both ways, a mirrored image
  plain[1].dx = -2;
  plain[2].flip = true;
  for (const mix of [false, true]) {
    const ds = plain.map((d, i) => ({
      ...d,
      j: mix ? rng.int(n) : i,
      lambda: mix ? rng.uniform() : 1,
    }));
    const draws = new BatchDraws(n);
    ds.forEach((d, i) => {
      draws.setImage(i, d.k, d.dy, d.dx, d.flip);
      if (mix) draws.setMix(i, d.j, d.lambda);
    });
    const out = gatherAugmented(images, draws);
    assert.deepEqual(out.shape, [n, ...chw]);
    const got = await out.read();
    const want = reference(src, chw, ds, mix);
    for (let i = 0; i < got.length; i++) {
      assert.ok(
        Math.abs(got[i] - want[i]) <= 1e-6,
        `mix ${mix}, element ${i}: ${got[i]} vs ${want[i]}`,
      );
    }
    if (!mix) assert.ok(got.some((v) => v === 0) && got.some((v) => v > 0));
    out.dispose();
  }
  const bad = new BatchDraws(1);
  bad.setImage(0, count);
  assert.throws(() => gatherAugmented(images, bad), RangeError);
  images.dispose();
});

Deno.test("KdBatches: the same batches whether the transfer set is on the adapter or not", async () => {
  await gpuReady;
  const chw = [1, 8, 8];
  const count = 20;
  const images = randArray(count * 64, 5, 0, 1);
  const aug = { shift: true, flip: true, mixup: true };
  const resident = new KdBatches(images, count, chw, 6, aug);
  const streamed = new KdBatches(images, count, chw, 6, aug, 0);
  const read = async (b: KdBatches) => {
    b.epoch(new Rng(9).fork("epoch"));
    const out = [];
    for (let s = 0; s < 3; s++) {
      const t = b.batch(s);
      out.push(await t.read());
      t.dispose();
    }
    return out;
  };
  const a = await read(resident);
  assert.deepEqual(await read(streamed), a);
  assert.notDeepEqual(a[0], a[1]);
  // A new epoch from the same generator repeats the batches; another one does not.
  assert.deepEqual(await read(resident), a);
  resident.dispose();
  streamed.dispose();
});
