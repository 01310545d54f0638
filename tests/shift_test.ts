import assert from "node:assert/strict";
import {
  type ImageShift,
  shift2d,
  shift2dBackward,
  shift2dPerImage,
  shift2dPerImageBackward,
} from "../src/ops/shift.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Exact: a shift is a permutation of values (tolerance 0).
function refShift(x: Float32Array, [n, c, h, w]: number[], dy: number, dx: number, flip: boolean) {
  const out = new Float64Array(x.length);
  const m = (a: number, k: number) => ((a % k) + k) % k;
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const fx = flip ? w - 1 - xx : xx;
        out[(p * h + y) * w + xx] = x[(p * h + m(y - dy, h)) * w + m(fx - dx, w)];
      }
    }
  }
  return out;
}

for (
  const [shape, dy, dx, flip] of [
    [[2, 1, 32, 32], 2, -1, false],
    [[1, 3, 5, 7], -3, 4, true],
    [[3, 2, 1, 9], 5, 0, true],
    [[1, 1, 4, 4], 0, 0, false],
  ] as [number[], number, number, boolean][]
) {
  Deno.test(`shift2d [${shape}] by (${dy}, ${dx}) flip=${flip} matches reference; backward is its transpose`, async () => {
    await gpuReady;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = randArray(size, 11);
    const g = randArray(size, 12);
    const tx = Tensor.from(x, shape);
    const tg = Tensor.from(g, shape);
    const y = shift2d(tx, dy, dx, flip);
    const gx = shift2dBackward(tg, dy, dx, flip);
    assertClose(await y.read(), refShift(x, shape, dy, dx, flip), {
      atol: 0,
      rtol: 0,
      label: "forward",
    });
    // Adjoint identity <shift(x), g> = <x, shift_backward(g)> (float64 sums; rtol 1e-6).
    const yv = await y.read();
    const gxv = await gx.read();
    let a = 0;
    let b = 0;
    for (let i = 0; i < size; i++) {
      a += yv[i] * g[i];
      b += x[i] * gxv[i];
    }
    assertClose([a], [b], { atol: 1e-6, rtol: 1e-6, label: "adjoint" });
    for (const t of [tx, tg, y, gx]) t.dispose();
  });
}

Deno.test("shift2dPerImage moves each image by its own shift; backward is its transpose", async () => {
  await gpuReady;
  const shape = [4, 2, 5, 7];
  const shifts: ImageShift[] = [
    { dy: 2, dx: -1, flip: false },
    { dy: -3, dx: 4, flip: true },
    { dy: 0, dx: 0, flip: false },
    { dy: 7, dx: -9, flip: true },
  ];
  const per = 2 * 5 * 7;
  const size = 4 * per;
  const x = randArray(size, 21);
  const g = randArray(size, 22);
  const tx = Tensor.from(x, shape);
  const tg = Tensor.from(g, shape);
  const y = await shift2dPerImage(tx, shifts).read();
  const gx = await shift2dPerImageBackward(tg, shifts).read();
  shifts.forEach((s, i) => {
    const one = [1, 2, 5, 7];
    const part = (a: Float32Array) => a.subarray(i * per, (i + 1) * per);
    const ref = refShift(part(x), one, s.dy, s.dx, s.flip);
    assertClose(part(y), ref, { atol: 0, rtol: 0, label: `image ${i} forward` });
    let a = 0;
    let b = 0;
    for (let j = 0; j < per; j++) {
      a += part(y)[j] * part(g)[j];
      b += part(x)[j] * part(gx)[j];
    }
    assertClose([a], [b], { atol: 1e-6, rtol: 1e-6, label: `image ${i} adjoint` });
  });
  assert.throws(() => shift2dPerImage(tx, shifts.slice(1)), /3 shifts for 4 images/);
  tx.dispose();
  tg.dispose();
});
