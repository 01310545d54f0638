import assert from "node:assert/strict";
import { totalVariation } from "../src/ops/loss.ts";
import { adamStep, adamTvJitterStep, adamTvStep } from "../src/ops/optim.ts";
import { shift2dPerImage, shift2dPerImageBackward } from "../src/ops/shift.ts";
import { totalVariation as tvNode } from "../src/autograd/functions.ts";
import { Tape } from "../src/autograd/tape.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, numGrad, randArray } from "./helpers.ts";

/** Float64 reference of the anisotropic total variation of NCHW images (batch mean). */
function tvRef(x: ArrayLike<number>, [n, c, h, w]: number[]): number {
  let vy = 0;
  let vx = 0;
  for (let p = 0; p < n * c; p++) {
    for (let r = 0; r < h; r++) {
      for (let q = 0; q < w; q++) {
        const i = (p * h + r) * w + q;
        if (r + 1 < h) vy += Math.abs(x[i + w] - x[i]);
        if (q + 1 < w) vx += Math.abs(x[i + 1] - x[i]);
      }
    }
  }
  return (h > 1 ? vy / (n * c * (h - 1) * w) : 0) + (w > 1 ? vx / (n * c * h * (w - 1)) : 0);
}

for (const shape of [[1, 1, 2, 3], [2, 1, 5, 4], [3, 2, 7, 7], [2, 1, 1, 6], [1, 1, 6, 1]]) {
  Deno.test(`totalVariation vs float64 and finite differences ([${shape}])`, async () => {
    await gpuReady;
    const size = shape.reduce((a, b) => a * b, 1);
    // values on a grid of 0.01 plus noise below 0.004: neighbours differ by at least ~0.002, so
    // central differences (h = 1e-5) never straddle a kink of |d|
    const x = randArray(size, size + 3, 0, 1).map((v, i) =>
      Math.round(v * 100) / 100 + (i % 7) * 5e-4
    );
    const tx = Tensor.from(x, shape);
    const r = totalVariation(tx);
    const [l, g] = [(await r.loss.read())[0], await r.grad.read()];
    assertClose([l], [tvRef(x, shape)], { atol: 1e-6, rtol: 1e-5, label: "tv loss" });
    const fd = numGrad((v) => tvRef(v, shape), x);
    let m = 0;
    for (const v of fd) m = Math.max(m, Math.abs(v));
    assertClose(g, fd, { atol: 1e-6 * m + 1e-8, rtol: 1e-4, label: "tv grad vs fd" });
    for (const t of [tx, r.loss, r.grad]) t.dispose();
  });
}

Deno.test("totalVariation over 250x1x32x32 vs float64, sign(0) = 0 on flat images", async () => {
  await gpuReady;
  const shape = [250, 1, 32, 32];
  const x = randArray(250 * 1024, 5, 0, 1);
  const tx = Tensor.from(x, shape);
  const r = totalVariation(tx);
  assertClose([(await r.loss.read())[0]], [tvRef(x, shape)], { atol: 0, rtol: 2e-5, label: "tv" });
  for (const t of [tx, r.loss, r.grad]) t.dispose();
  const flat = Tensor.from(new Float32Array(2 * 16).fill(0.5), [2, 1, 4, 4]);
  const f = totalVariation(flat);
  assert.equal((await f.loss.read())[0], 0);
  assert.ok((await f.grad.read()).every((v) => v === 0));
  for (const t of [flat, f.loss, f.grad]) t.dispose();
});

Deno.test("totalVariation through the tape: the gradient reaches the images", async () => {
  await gpuReady;
  const shape = [2, 1, 4, 5];
  const x = randArray(40, 11, 0, 1);
  const tx = Tensor.from(x, shape);
  tx.requiresGrad = true;
  const tape = new Tape();
  const loss = tape.run(() => tvNode(tx));
  const g = tape.backward(loss, [tx]).get(tx)!;
  const direct = totalVariation(tx);
  assertClose(await g.read(), await direct.grad.read(), { atol: 0, rtol: 0, label: "tape grad" });
  for (const t of [tx, loss, g, direct.loss, direct.grad]) t.dispose();
});

Deno.test("totalVariation rejects a tensor that is not NCHW", async () => {
  await gpuReady;
  const t = Tensor.zeros([4, 4]);
  assert.throws(() => totalVariation(t), /\[N, C, H, W\]/);
  t.dispose();
});

Deno.test("adamTvStep is adamStep on grad + λ·dTV/dx (TV summed over images), not in place", async () => {
  await gpuReady;
  const shape = [3, 1, 6, 5];
  const x = randArray(90, 21, 0, 1);
  const g0 = randArray(90, 22, -1, 1);
  const opts = { lr: 0.05, clampMin: 0, clampMax: 1 };
  const [tx, tg, out] = [Tensor.from(x, shape), Tensor.from(g0, shape), Tensor.empty(shape)];
  const [m, v] = [
    Tensor.from(randArray(90, 23), shape),
    Tensor.from(randArray(90, 24, 0, 1), shape),
  ];
  // The reference: the TV kernel's own gradient added on the host, then the plain Adam step.
  const sum = totalVariation(tx, "sum");
  const joined = Float32Array.from(await sum.grad.read(), (d, i) => g0[i] + 0.5 * d);
  const [rx, rg] = [Tensor.from(x, shape), Tensor.from(joined, shape)];
  const [rm, rv] = [Tensor.from(await m.read(), shape), Tensor.from(await v.read(), shape)];
  adamStep(rx, rg, rm, rv, 3, opts);
  adamTvStep(tx, tg, m, v, 3, opts, 0.5, out);
  const tol = { atol: 1e-6, rtol: 1e-5 };
  assertClose(await out.read(), await rx.read(), { ...tol, label: "images" });
  assertClose(await m.read(), await rm.read(), { ...tol, label: "m" });
  assertClose(await v.read(), await rv.read(), { ...tol, label: "v" });
  assert.deepEqual(await tx.read(), x, "x is read only");
  assertClose([(await sum.loss.read())[0]], [3 * tvRef(x, shape)], {
    atol: 1e-6,
    rtol: 1e-5,
    label: "sum = N · mean",
  });
  assert.throws(() => adamTvStep(tx, tg, m, v, 3, opts, 0.5, tx), /share one buffer/);
  for (const t of [tx, tg, out, m, v, rx, rg, rm, rv, sum.loss, sum.grad]) t.dispose();
});

Deno.test("adamTvJitterStep is the jitter's backward pass, adamTvStep and the next jitter", async () => {
  await gpuReady;
  const shape = [3, 2, 6, 5];
  const size = 180;
  const x = randArray(size, 31, 0, 1);
  const g0 = randArray(size, 32, -1, 1);
  const m0 = randArray(size, 33);
  const v0 = randArray(size, 34, 0, 1);
  const now = [{ dy: 1, dx: -2, flip: false }, { dy: -3, dx: 4, flip: true }, {
    dy: 0,
    dx: 0,
    flip: true,
  }];
  const next = [{ dy: -1, dx: 1, flip: true }, { dy: 2, dx: 0, flip: false }, {
    dy: 5,
    dx: -6,
    flip: false,
  }];
  const opts = { lr: 0.05, clampMin: 0, clampMax: 1 };
  for (const weight of [0.5, 0]) {
    for (const nxt of [next, null]) {
      // The reference: the unfused ops, one after the other.
      const [rx, rm, rv, rout] = [
        Tensor.from(x, shape),
        Tensor.from(m0, shape),
        Tensor.from(v0, shape),
        Tensor.empty(shape),
      ];
      const rg = shift2dPerImageBackward(Tensor.from(g0, shape), now);
      adamTvStep(rx, rg, rm, rv, 4, opts, weight, rout);
      const [tx, tg, tm, tv, out] = [
        Tensor.from(x, shape),
        Tensor.from(g0, shape),
        Tensor.from(m0, shape),
        Tensor.from(v0, shape),
        Tensor.empty(shape),
      ];
      const jittered = Tensor.from(new Float32Array(size).fill(-1), shape);
      adamTvJitterStep(tx, tg, tm, tv, 4, opts, weight, out, now, nxt, jittered);
      const label = `weight ${weight}, next ${nxt ? "given" : "null"}`;
      assert.deepEqual(await out.read(), await rout.read(), `images, ${label}`);
      assert.deepEqual(await tm.read(), await rm.read(), `m, ${label}`);
      assert.deepEqual(await tv.read(), await rv.read(), `v, ${label}`);
      const want = nxt ? await shift2dPerImage(rout, nxt).read() : new Float32Array(size).fill(-1);
      assert.deepEqual(await jittered.read(), want, `jittered copy, ${label}`);
      for (const t of [rx, rm, rv, rout, rg, tx, tg, tm, tv, out, jittered]) t.dispose();
    }
  }
  const t = Tensor.zeros(shape);
  const [a, b, c, d, e] = [0, 1, 2, 3, 4].map(() => Tensor.zeros(shape));
  assert.throws(
    () => adamTvJitterStep(t, a, b, c, 1, opts, 0.5, d, now.slice(1), null, e),
    /2 now shifts for 3/,
  );
  for (const u of [t, a, b, c, d, e]) u.dispose();
});
