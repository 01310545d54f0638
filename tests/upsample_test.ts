import assert from "node:assert/strict";
import { totalVariation, upsampleBilinear as upsampleOnTape } from "../src/autograd/functions.ts";
import { Tape } from "../src/autograd/tape.ts";
import { upsampleBilinear, upsampleBilinearBackward } from "../src/ops/upsample.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

/** Float64 reference: PyTorch's bilinear interpolation with align_corners=False. */
function refUpsample(x: Float32Array, [n, c, h, w]: number[], f: number): Float64Array {
  const [hh, ww] = [h * f, w * f];
  const taps = (o: number, size: number) => {
    const s = Math.max((o + 0.5) / f - 0.5, 0);
    const i0 = Math.min(Math.floor(s), size - 1);
    return { i0, i1: Math.min(i0 + 1, size - 1), l: s - i0 };
  };
  const out = new Float64Array(n * c * hh * ww);
  for (let p = 0; p < n * c; p++) {
    for (let oy = 0; oy < hh; oy++) {
      const ty = taps(oy, h);
      for (let ox = 0; ox < ww; ox++) {
        const tx = taps(ox, w);
        const at = (y: number, xx: number) => x[(p * h + y) * w + xx];
        const top = (1 - tx.l) * at(ty.i0, tx.i0) + tx.l * at(ty.i0, tx.i1);
        const bottom = (1 - tx.l) * at(ty.i1, tx.i0) + tx.l * at(ty.i1, tx.i1);
        out[(p * hh + oy) * ww + ox] = (1 - ty.l) * top + ty.l * bottom;
      }
    }
  }
  return out;
}

for (
  const [shape, f] of [
    [[2, 1, 16, 16], 2],
    [[1, 3, 5, 7], 3],
    [[3, 1, 8, 8], 4],
    [[1, 2, 1, 4], 2],
    [[2, 1, 6, 6], 1],
  ] as [number[], number][]
) {
  Deno.test(`upsampleBilinear [${shape}] ×${f} matches float64; backward is its adjoint`, async () => {
    await gpuReady;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = randArray(size, 21);
    const tx = Tensor.from(x, shape);
    const ty = upsampleBilinear(tx, f);
    assert.deepEqual(ty.shape, [shape[0], shape[1], shape[2] * f, shape[3] * f]);
    const y = await ty.read();
    assertClose(y, refUpsample(x, shape, f), { atol: 1e-6, label: "forward" });
    // ⟨U x, g⟩ = ⟨x, Uᵀ g⟩ for a random g: the backward pass is the exact transpose.
    const g = randArray(ty.size, 22);
    const tg = Tensor.from(g, ty.shape);
    const tgx = upsampleBilinearBackward(tg, f);
    const gx = await tgx.read();
    let lhs = 0, rhs = 0;
    for (let i = 0; i < y.length; i++) lhs += y[i] * g[i];
    for (let i = 0; i < x.length; i++) rhs += x[i] * gx[i];
    assert.ok(
      Math.abs(lhs - rhs) < 1e-4 * (1 + Math.abs(lhs)),
      `⟨Ux, g⟩ ${lhs} vs ⟨x, Uᵀg⟩ ${rhs}`,
    );
    // Each column of U sums its weights: Uᵀ 1 counts how much of the output each input makes.
    const tOnes = Tensor.from(new Float32Array(ty.size).fill(1), ty.shape);
    const tSums = upsampleBilinearBackward(tOnes, f);
    const ones = await tSums.read();
    const total = ones.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - ty.size) < 1e-3 * ty.size, `Σ Uᵀ1 = ${total}, outputs ${ty.size}`);
    for (const t of [tx, ty, tg, tgx, tOnes, tSums]) t.dispose();
  });
}

Deno.test("upsampleBilinear on the tape: the gradient is Uᵀ of the output's gradient", async () => {
  await gpuReady;
  const shape = [2, 1, 4, 4];
  const x = Tensor.from(randArray(32, 31), shape);
  x.requiresGrad = true;
  // d TV(U x)/dx on one tape, against Uᵀ (d TV(y)/dy at y = U x) from another.
  const tape = new Tape();
  const loss = tape.run(() => totalVariation(upsampleOnTape(x, 2), "sum"));
  const tgx = tape.backward(loss, [x]).get(x)!;
  const gx = await tgx.read();
  const y = upsampleBilinear(x, 2);
  y.requiresGrad = true;
  const tapeY = new Tape();
  const lossY = tapeY.run(() => totalVariation(y, "sum"));
  const gy = tapeY.backward(lossY, [y]).get(y)!;
  const tWant = upsampleBilinearBackward(gy, 2);
  const want = await tWant.read();
  assertClose(gx, want, { atol: 1e-6, label: "tape" });
  for (const t of [x, loss, tgx, y, lossY, gy, tWant]) t.dispose();
});

Deno.test("upsampleBilinear rejects a non-integer factor and a gradient of the wrong size", async () => {
  await gpuReady;
  const x = Tensor.zeros([1, 1, 4, 4]);
  const odd = Tensor.zeros([1, 1, 5, 4]);
  assert.throws(() => upsampleBilinear(x, 1.5), /factor must be an integer/);
  assert.throws(() => upsampleBilinearBackward(odd, 2), /multiples of 2/);
  const flat = Tensor.zeros([4, 4]);
  assert.throws(() => upsampleBilinear(flat, 2), /4-D/);
  for (const t of [x, odd, flat]) t.dispose();
});
