import {
  avgPool2d,
  avgPool2dBackward,
  maxPool2d,
  maxPool2dBackward,
  type Pool2dOptions,
} from "../src/ops/pool.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray, rng } from "./helpers.ts";

// Tolerances. Max pooling forward and backward are exact (a copy and a sum of at most
// ceil(k/s)² values of gy, here ≤ 4): atol 1e-6, rtol 1e-6. Average pooling sums k² values and
// divides once: atol 1e-6, rtol 1e-5. Finite differences: central differences of the float64
// CPU forward of sum(r·y) with step h = 0.2 / (element count); inputs are a random permutation of
// i / count, so each window's maximum leads the runner-up by >= 1 / count and the loss is linear
// within ±h: exact up to float64 rounding, compared with the same tolerance.

interface Case {
  name: string;
  x: [number, number, number, number];
  k: number;
  s?: number;
}

const cases: Case[] = [
  { name: "2x2 stride 2, even", x: [2, 3, 8, 6], k: 2 },
  { name: "2x2 stride 2, odd sizes", x: [1, 5, 7, 9], k: 2 },
  { name: "3x3 stride 2 (overlapping), odd sizes", x: [2, 2, 11, 9], k: 3, s: 2 },
  { name: "3x3 stride 3, odd", x: [3, 1, 10, 13], k: 3 },
  { name: "2x2 stride 1 (overlapping)", x: [1, 2, 5, 7], k: 2, s: 1 },
  { name: "LeNet 6x28x28, 2x2", x: [2, 6, 28, 28], k: 2 },
  { name: "1x1 stride 2", x: [1, 2, 5, 6], k: 1, s: 2 },
];

/** Distinct values: a random permutation of i / n (no ties within any window). */
function distinct(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const a = Float32Array.from({ length: n }, (_, i) => i / n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function outSize(g: Case): [number, number] {
  const s = g.s ?? g.k;
  return [Math.floor((g.x[2] - g.k) / s) + 1, Math.floor((g.x[3] - g.k) / s) + 1];
}

/** float64 CPU pooling: values and (for max) the flat input index of each first maximum. */
function poolRef(x: ArrayLike<number>, g: Case, kind: "max" | "avg") {
  const [N, C, H, W] = g.x;
  const [OH, OW] = outSize(g);
  const s = g.s ?? g.k;
  const y = new Float64Array(N * C * OH * OW);
  const arg = new Uint32Array(y.length);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        let best = -Infinity;
        let at = 0;
        let sum = 0;
        for (let ky = 0; ky < g.k; ky++) {
          for (let kx = 0; kx < g.k; kx++) {
            const i = (pl * H + oy * s + ky) * W + ox * s + kx;
            sum += x[i];
            if (x[i] > best) [best, at] = [x[i], i];
          }
        }
        const o = (pl * OH + oy) * OW + ox;
        y[o] = kind === "max" ? best : sum / (g.k * g.k);
        arg[o] = at;
      }
    }
  }
  return { y, arg };
}

/** Analytic float64 gradient of sum(r·y) with respect to x. */
function gradRef(x: ArrayLike<number>, r: ArrayLike<number>, g: Case, kind: "max" | "avg") {
  const [N, C, H, W] = g.x;
  const [OH, OW] = outSize(g);
  const s = g.s ?? g.k;
  const { arg } = poolRef(x, g, "max");
  const gx = new Float64Array(N * C * H * W);
  for (let pl = 0; pl < N * C; pl++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const o = (pl * OH + oy) * OW + ox;
        if (kind === "max") {
          gx[arg[o]] += r[o];
          continue;
        }
        for (let ky = 0; ky < g.k; ky++) {
          for (let kx = 0; kx < g.k; kx++) {
            gx[(pl * H + oy * s + ky) * W + ox * s + kx] += r[o] / (g.k * g.k);
          }
        }
      }
    }
  }
  return gx;
}

function finiteDiff(
  x: Float32Array,
  r: Float32Array,
  g: Case,
  kind: "max" | "avg",
  idx: readonly number[],
): number[] {
  const h = 0.2 / x.length;
  const loss = (xx: Float64Array) => {
    const { y } = poolRef(xx, g, kind);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += r[i] * y[i];
    return s;
  };
  return idx.map((i) => {
    const xx = Float64Array.from(x);
    xx[i] = x[i] + h;
    const up = loss(xx);
    xx[i] = x[i] - h;
    return (up - loss(xx)) / (2 * h);
  });
}

const maxTol = { atol: 1e-6, rtol: 1e-6 };
const avgTol = { atol: 1e-6, rtol: 1e-5 };

for (const [ci, g] of cases.entries()) {
  Deno.test(`max and average pooling vs float64 reference: ${g.name}`, async () => {
    await gpuReady;
    const opts: Pool2dOptions = { kernelSize: g.k, stride: g.s };
    const n = g.x.reduce((a, b) => a * b);
    const [OH, OW] = outSize(g);
    const outShape = [g.x[0], g.x[1], OH, OW];
    const xs = distinct(n, 100 + ci);
    const rs = randArray(outShape.reduce((a, b) => a * b), 200 + ci);
    const x = Tensor.from(xs, g.x);
    const gy = Tensor.from(rs, outShape);

    const { y, argmax } = maxPool2d(x, opts);
    const gxMax = maxPool2dBackward(gy, argmax, g.x, opts);
    const yAvg = avgPool2d(x, opts);
    const gxAvg = avgPool2dBackward(gy, g.x, opts);

    const ref = poolRef(xs, g, "max");
    if (y.shape.join() !== outShape.join() || argmax.dtype !== "u32") {
      throw new Error(`y [${y.shape}] ${argmax.dtype}`);
    }
    assertClose(await y.read(), ref.y, { ...maxTol, label: `${g.name} max forward` });
    assertClose(await argmax.readU32(), ref.arg, { atol: 0, rtol: 0, label: `${g.name} argmax` });
    assertClose(await yAvg.read(), poolRef(xs, g, "avg").y, {
      ...avgTol,
      label: `${g.name} avg forward`,
    });

    const gmax = await gxMax.read();
    const gavg = await gxAvg.read();
    assertClose(gmax, gradRef(xs, rs, g, "max"), { ...maxTol, label: `${g.name} max backward` });
    assertClose(gavg, gradRef(xs, rs, g, "avg"), { ...avgTol, label: `${g.name} avg backward` });

    const idx = Array.from(randArray(8, 300 + ci, 0, 1), (v) => Math.floor(v * n));
    // include the argmax of the first window, so a nonzero max gradient is always checked
    idx.push(ref.arg[0]);
    assertClose(idx.map((i) => gmax[i]), finiteDiff(xs, rs, g, "max", idx), {
      ...maxTol,
      label: `${g.name} max backward vs finite differences`,
    });
    assertClose(idx.map((i) => gavg[i]), finiteDiff(xs, rs, g, "avg", idx), {
      ...avgTol,
      label: `${g.name} avg backward vs finite differences`,
    });

    for (const t of [x, gy, y, argmax, gxMax, yAvg, gxAvg]) t.dispose();
  });
}

Deno.test("pooling validates shapes", async () => {
  await gpuReady;
  const x = Tensor.zeros([1, 2, 4, 4]);
  const gy = Tensor.zeros([1, 2, 2, 2]);
  const bad = Tensor.zeros([1, 2, 3, 2]);
  const arg = Tensor.zeros([1, 2, 2, 2], "u32");
  const expectThrow = (f: () => unknown, what: string) => {
    try {
      f();
    } catch (e) {
      if (e instanceof RangeError) return;
      throw e;
    }
    throw new Error(`expected a RangeError for ${what}`);
  };
  expectThrow(() => maxPool2d(x, { kernelSize: 5 }), "window larger than input");
  expectThrow(() => avgPool2d(x, { kernelSize: 0 }), "kernel size 0");
  expectThrow(() => maxPool2dBackward(bad, arg, [1, 2, 4, 4], { kernelSize: 2 }), "gy shape");
  expectThrow(() => maxPool2dBackward(gy, gy, [1, 2, 4, 4], { kernelSize: 2 }), "f32 argmax");
  expectThrow(() => avgPool2dBackward(bad, [1, 2, 4, 4], { kernelSize: 2 }), "gy shape");
  for (const t of [x, gy, bad, arg]) t.dispose();
});
