import {
  conv2d,
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  type Conv2dOptions,
} from "../src/ops/conv2d.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerances. Forward and analytic backward: the GPU sums K = C·kH·kW (or O·kH·kW, or N·OH·OW)
// f32 products of values in [-1, 1]; f32 rounding grows like sqrt(K)·2^-24·|terms|, so
// atol 1e-5·sqrt(K) and rtol 1e-4 hold with a wide margin.
// Finite differences: central differences of the float64 CPU forward of sum(r·y), step 1e-3; the
// loss is linear in each argument, so the only error is float64 rounding (~1e-12): compared to the
// GPU gradient with the same tolerance as above.

interface Case {
  name: string;
  x: [number, number, number, number];
  o: number;
  k: [number, number];
  stride: number;
  padding: number;
  bias: boolean;
}

const cases: Case[] = [
  { name: "LeNet conv1", x: [2, 1, 32, 32], o: 6, k: [5, 5], stride: 1, padding: 0, bias: true },
  { name: "LeNet conv2", x: [3, 6, 14, 14], o: 16, k: [5, 5], stride: 1, padding: 0, bias: true },
  { name: "odd 3x3 pad 1", x: [1, 3, 7, 9], o: 5, k: [3, 3], stride: 1, padding: 1, bias: true },
  {
    name: "3x3 stride 2 pad 1",
    x: [2, 5, 11, 9],
    o: 7,
    k: [3, 3],
    stride: 2,
    padding: 1,
    bias: true,
  },
  {
    name: "11x11 stride 4 pad 2 (CIFAR-like)",
    x: [2, 3, 32, 32],
    o: 9,
    k: [11, 11],
    stride: 4,
    padding: 2,
    bias: true,
  },
  { name: "1x1", x: [2, 7, 5, 6], o: 3, k: [1, 1], stride: 1, padding: 0, bias: false },
  {
    name: "2x4 kernel, pad 3",
    x: [1, 2, 6, 5],
    o: 1,
    k: [2, 4],
    stride: 1,
    padding: 3,
    bias: true,
  },
  {
    name: "4x3 kernel stride 3",
    x: [3, 4, 13, 10],
    o: 10,
    k: [4, 3],
    stride: 3,
    padding: 0,
    bias: false,
  },
  { name: "wide 9x9 pad 4", x: [1, 2, 12, 17], o: 3, k: [9, 9], stride: 1, padding: 4, bias: true },
];

function outSize(g: Case): [number, number] {
  const [, , H, W] = g.x;
  return [
    Math.floor((H + 2 * g.padding - g.k[0]) / g.stride) + 1,
    Math.floor((W + 2 * g.padding - g.k[1]) / g.stride) + 1,
  ];
}

/** float64 CPU conv2d forward. */
function convRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  g: Case,
): Float64Array {
  const [N, C, H, W] = g.x;
  const [KH, KW] = g.k;
  const [OH, OW] = outSize(g);
  const O = g.o;
  const s = g.stride;
  const p = g.padding;
  const y = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let a = b ? b[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * s + ky - p;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * s + kx - p;
                if (ix < 0 || ix >= W) continue;
                a += x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * KH + ky) * KW + kx];
              }
            }
          }
          y[((n * O + o) * OH + oy) * OW + ox] = a;
        }
      }
    }
  }
  return y;
}

/** float64 analytic gradients of sum(r·y) (the CPU reference of the three backward passes). */
function convGradRef(x: Float32Array, w: Float32Array, r: Float32Array, g: Case) {
  const [N, C, H, W] = g.x;
  const [KH, KW] = g.k;
  const [OH, OW] = outSize(g);
  const O = g.o;
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(O);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const gy = r[((n * O + o) * OH + oy) * OW + ox];
          gb[o] += gy;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * g.stride + ky - g.padding;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * g.stride + kx - g.padding;
                if (ix < 0 || ix >= W) continue;
                const xi = ((n * C + c) * H + iy) * W + ix;
                const wi = ((o * C + c) * KH + ky) * KW + kx;
                gx[xi] += gy * w[wi];
                gw[wi] += gy * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { gx, gw, gb };
}

/** Central finite differences of sum(r·convRef) with respect to chosen entries of one argument. */
function finiteDiff(
  arg: "x" | "w" | "b",
  idx: readonly number[],
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  r: Float32Array,
  g: Case,
): number[] {
  const h = 1e-3;
  const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => {
    const y = convRef(xx, ww, bb, g);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += r[i] * y[i];
    return s;
  };
  return idx.map((i) => {
    const args = { x: Float64Array.from(x), w: Float64Array.from(w), b: Float64Array.from(b) };
    const a = args[arg];
    const v = a[i];
    a[i] = v + h;
    const up = loss(args.x, args.w, args.b);
    a[i] = v - h;
    const down = loss(args.x, args.w, args.b);
    return (up - down) / (2 * h);
  });
}

function pick(n: number, count: number, seed: number): number[] {
  const r = randArray(count, seed, 0, 1);
  return Array.from(r, (v) => Math.min(n - 1, Math.floor(v * n)));
}

function tolFor(k: number) {
  return { atol: 1e-5 * Math.sqrt(k), rtol: 1e-4 };
}

for (const [ci, g] of cases.entries()) {
  const opts: Conv2dOptions = { stride: g.stride, padding: g.padding };
  const [N, C, H, W] = g.x;
  const [KH, KW] = g.k;
  const [OH, OW] = outSize(g);
  const wShape = [g.o, C, KH, KW];

  Deno.test(`conv2d forward and backward vs float64 reference: ${g.name}`, async () => {
    await gpuReady;
    const xs = randArray(N * C * H * W, 10 + ci);
    const ws = randArray(g.o * C * KH * KW, 20 + ci);
    const bs = g.bias ? randArray(g.o, 30 + ci) : new Float32Array(g.o);
    const rs = randArray(N * g.o * OH * OW, 40 + ci); // gy = r for the loss sum(r·y)
    const x = Tensor.from(xs, g.x);
    const w = Tensor.from(ws, wShape);
    const b = g.bias ? Tensor.from(bs, [g.o]) : null;
    const gy = Tensor.from(rs, [N, g.o, OH, OW]);

    const y = conv2d(x, w, b, opts);
    const gx = conv2dBackwardInput(gy, w, g.x, opts);
    const gw = conv2dBackwardWeight(x, gy, wShape, opts);
    const gb = conv2dBackwardBias(gy);

    const label = (s: string) => `${g.name} ${s}`;
    if (y.shape.join() !== [N, g.o, OH, OW].join()) throw new Error(`y shape [${y.shape}]`);
    assertClose(await y.read(), convRef(xs, ws, g.bias ? bs : null, g), {
      ...tolFor(C * KH * KW),
      label: label("forward"),
    });

    const ref = convGradRef(xs, ws, rs, g);
    const gxs = await gx.read();
    const gws = await gw.read();
    const gbs = await gb.read();
    assertClose(gxs, ref.gx, { ...tolFor(g.o * KH * KW), label: label("grad x") });
    assertClose(gws, ref.gw, { ...tolFor(N * OH * OW), label: label("grad w") });
    assertClose(gbs, ref.gb, { ...tolFor(N * OH * OW), label: label("grad b") });

    // Finite differences at a few random entries of each argument.
    const ix = pick(xs.length, 6, 50 + ci);
    const iw = pick(ws.length, 6, 60 + ci);
    const ib = pick(g.o, 3, 70 + ci);
    assertClose(
      ix.map((i) => gxs[i]),
      finiteDiff("x", ix, xs, ws, bs, rs, g),
      { ...tolFor(g.o * KH * KW), label: label("grad x vs finite differences") },
    );
    assertClose(
      iw.map((i) => gws[i]),
      finiteDiff("w", iw, xs, ws, bs, rs, g),
      { ...tolFor(N * OH * OW), label: label("grad w vs finite differences") },
    );
    assertClose(
      ib.map((i) => gbs[i]),
      finiteDiff("b", ib, xs, ws, bs, rs, g),
      { ...tolFor(N * OH * OW), label: label("grad b vs finite differences") },
    );

    for (const t of [x, w, b, gy, y, gx, gw, gb]) t?.dispose();
  });
}

Deno.test("conv2d weights larger than one uniform chunk (chunked over channels)", async () => {
  await gpuReady;
  // 40 x 70 x 3 x 3 = 25,200 floats > 16,384: chunked over output channels; the backward-input
  // pass (70 outputs, 40 inputs) too. 6 x 1100 x 2 x 2: chunked over input channels.
  for (
    const g of [
      { name: "o-chunks", x: [2, 70, 6, 5], o: 40, k: [3, 3], stride: 1, padding: 1, bias: true },
      { name: "c-chunks", x: [1, 1100, 3, 5], o: 6, k: [2, 2], stride: 1, padding: 0, bias: true },
    ] as Case[]
  ) {
    const [N, C, H, W] = g.x;
    const [KH, KW] = g.k;
    const [OH, OW] = outSize(g);
    const xs = randArray(N * C * H * W, 1);
    const ws = randArray(g.o * C * KH * KW, 2);
    const bs = randArray(g.o, 3);
    const rs = randArray(N * g.o * OH * OW, 4);
    const x = Tensor.from(xs, g.x);
    const w = Tensor.from(ws, [g.o, C, KH, KW]);
    const b = Tensor.from(bs, [g.o]);
    const gy = Tensor.from(rs, [N, g.o, OH, OW]);
    const opts = { stride: g.stride, padding: g.padding };
    const y = conv2d(x, w, b, opts);
    const gx = conv2dBackwardInput(gy, w, g.x, opts);
    assertClose(await y.read(), convRef(xs, ws, bs, g), {
      ...tolFor(C * KH * KW),
      label: `${g.name} forward`,
    });
    assertClose(await gx.read(), convGradRef(xs, ws, rs, g).gx, {
      ...tolFor(g.o * KH * KW),
      label: `${g.name} grad x`,
    });
    for (const t of [x, w, b, gy, y, gx]) t.dispose();
  }
});

Deno.test("conv2d validates shapes", async () => {
  await gpuReady;
  const x = Tensor.zeros([1, 3, 8, 8]);
  const w = Tensor.zeros([4, 2, 3, 3]);
  const w3 = Tensor.zeros([4, 3, 3, 3]);
  const big = Tensor.zeros([4, 3, 9, 9]);
  const b = Tensor.zeros([5]);
  const x3 = x.reshape([3, 8, 8]);
  const expectThrow = (f: () => unknown, what: string) => {
    try {
      f();
    } catch (e) {
      if (e instanceof RangeError) return;
      throw e;
    }
    throw new Error(`expected a RangeError for ${what}`);
  };
  expectThrow(() => conv2d(x, w, null), "channel mismatch");
  expectThrow(() => conv2d(x, w3, b), "bias size");
  expectThrow(() => conv2d(x, big, null), "kernel larger than input");
  expectThrow(() => conv2d(x, w3, null, { stride: 0 }), "stride 0");
  expectThrow(() => conv2d(x3, w3, null), "3-D input");
  expectThrow(() => conv2dBackwardInput(x, w3, [1, 3, 8, 8]), "wrong gy shape");
  expectThrow(() => conv2dBackwardWeight(x, x, [4, 3, 3, 3]), "wrong gy shape");
  for (const t of [x, x3, w, w3, big, b]) t.dispose();
});
