import assert from "node:assert/strict";
import {
  conv2dReluMaxPool2d,
  linearKdLoss,
  linearKlDivLoss,
  linearRelu,
  reluMaxPool2d,
} from "../src/autograd/fused.ts";
import { Tape } from "../src/autograd/tape.ts";
import { runtimeStats } from "../src/gpu/runtime.ts";
import { buildModel } from "../src/nn/models.ts";
import { conv2d } from "../src/ops/conv2d.ts";
import { matmul, type MatmulStrategy } from "../src/ops/matmul.ts";
import { adamStep } from "../src/ops/optim.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { assertClose, assertNear, gpuReady, numGrad, randArray } from "./helpers.ts";

// Float64 CPU references of the fused functions, and central finite differences of
// sum(r ⊙ f(x)) on them (step 1e-5; the test values keep every ReLU input and every window's
// two largest values more than 1e-3 apart from 0 and from each other with high probability, so
// no difference crosses a kink). GPU values are f32 sums of at most a few hundred products of
// values in [-1, 1]: atol 1e-4, rtol 1e-3 hold with a wide margin.
const TOL = { atol: 1e-4, rtol: 1e-3 };

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  o: number;
  k: number;
  stride: number;
  padding: number;
  pool: number;
}

const convCases: ConvCase[] = [
  { name: "LeNet conv1-like", x: [2, 1, 12, 12], o: 3, k: 5, stride: 1, padding: 0, pool: 2 },
  { name: "3×3 pad 1", x: [2, 2, 8, 8], o: 3, k: 3, stride: 1, padding: 1, pool: 2 },
  {
    name: "stride 2, partial windows",
    x: [1, 2, 9, 9],
    o: 2,
    k: 3,
    stride: 2,
    padding: 1,
    pool: 2,
  },
];

/** maxPool(relu(conv(x, w) + b)) in float64, [N, O, PH, PW]. */
function convBlockRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  g: ConvCase,
) {
  const [N, C, H, W] = g.x;
  const { o: O, k: K, stride: S, padding: P, pool: Q } = g;
  const OH = Math.floor((H + 2 * P - K) / S) + 1;
  const OW = Math.floor((W + 2 * P - K) / S) + 1;
  const z = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let s = b[o];
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < K; ky++) {
              for (let kx = 0; kx < K; kx++) {
                const iy = oy * S + ky - P;
                const ix = ox * S + kx - P;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * K + ky) * K + kx];
              }
            }
          }
          z[((n * O + o) * OH + oy) * OW + ox] = s;
        }
      }
    }
  }
  return reluPoolRef(z, [N, O, OH, OW], Q);
}

/** maxPool(relu(z)) over q × q windows, stride q, in float64. */
function reluPoolRef(z: ArrayLike<number>, [N, C, H, W]: number[], q: number): Float64Array {
  const PH = Math.floor(H / q);
  const PW = Math.floor(W / q);
  const y = new Float64Array(N * C * PH * PW);
  for (let p = 0; p < N * C; p++) {
    for (let py = 0; py < PH; py++) {
      for (let px = 0; px < PW; px++) {
        let m = 0;
        for (let a = 0; a < q; a++) {
          for (let c = 0; c < q; c++) m = Math.max(m, z[(p * H + py * q + a) * W + px * q + c]);
        }
        y[(p * PH + py) * PW + px] = m;
      }
    }
  }
  return y;
}

const dot = (a: ArrayLike<number>, r: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * r[i];
  return s;
};

/** The gradients of sum(r ⊙ f(inputs)) w.r.t. the tensors `wrt`, on a tape. */
async function tapeGrads(f: () => Tensor, r: Float32Array, wrt: Tensor[]): Promise<Float32Array[]> {
  const grads = tidy(() => {
    const tape = new Tape();
    const loss = tape.run(() => {
      const y = f();
      return dotLoss(y, r);
    });
    return [...tape.backward(loss, wrt).values()] as Tensor[];
  });
  const out = [];
  for (const g of grads) {
    out.push(await g.read());
    g.dispose();
  }
  return out;
}

/** sum(y ⊙ r) as a recorded [1] loss: a linear layer with weight r, differentiable in y. */
function dotLoss(y: Tensor, r: Float32Array): Tensor {
  return linearDot(reshape(y, [1, y.size]), Tensor.from(r, [1, y.size]));
}

import { linear, reshape } from "../src/autograd/functions.ts";
const linearDot = (x: Tensor, w: Tensor): Tensor => reshape(linear(x, w, null), [1]);

for (const g of convCases) {
  Deno.test(`conv2dReluMaxPool2d ${g.name}: forward and input gradient (fused backward)`, async () => {
    await gpuReady;
    const [N, C] = g.x;
    const xs = randArray(g.x.reduce((a, b) => a * b), 1);
    const ws = randArray(g.o * C * g.k * g.k, 2);
    const bs = randArray(g.o, 3, -0.2, 0.2);
    const x = Tensor.from(xs, g.x);
    const w = Tensor.from(ws, [g.o, C, g.k, g.k]);
    const b = Tensor.from(bs, [g.o]);
    const conv = { stride: g.stride, padding: g.padding };
    const pool = { kernelSize: g.pool };
    const ref = convBlockRef(xs, ws, bs, g);
    const y = conv2dReluMaxPool2d(x, w, b, conv, pool);
    assertClose(await y.read(), ref, { ...TOL, label: "forward" });
    const r = randArray(ref.length, 4);
    x.requiresGrad = true;
    const [gx] = await tapeGrads(() => conv2dReluMaxPool2d(x, w, b, conv, pool), r, [x]);
    const fd = numGrad((xx) => dot(convBlockRef(xx, ws, bs, g), r), xs);
    assertClose(gx, fd, { ...TOL, label: `gx (N ${N})` });
    // Trainable weights take the unfused backward: every gradient against differences.
    w.requiresGrad = true;
    b.requiresGrad = true;
    const [gx2, gw, gb] = await tapeGrads(
      () => conv2dReluMaxPool2d(x, w, b, conv, pool),
      r,
      [x, w, b],
    );
    assertClose(gx2, fd, { ...TOL, label: "gx (unfused)" });
    assertClose(gw, numGrad((ww) => dot(convBlockRef(xs, ww, bs, g), r), ws), {
      ...TOL,
      label: "gw",
    });
    assertClose(gb, numGrad((bb) => dot(convBlockRef(xs, ws, bb, g), r), bs), {
      ...TOL,
      label: "gb",
    });
    for (const t of [x, w, b, y]) t.dispose();
  });
}

Deno.test("reluMaxPool2d: forward and masked backward against float64", async () => {
  await gpuReady;
  const shape = [2, 3, 6, 8];
  const xs = randArray(2 * 3 * 6 * 8, 5);
  const x = Tensor.from(xs, shape);
  const y = reluMaxPool2d(x, { kernelSize: 2 });
  const ref = reluPoolRef(xs, shape, 2);
  assertClose(await y.read(), ref, { ...TOL, label: "forward" });
  x.requiresGrad = true;
  const r = randArray(ref.length, 6);
  const [gx] = await tapeGrads(() => reluMaxPool2d(x, { kernelSize: 2 }), r, [x]);
  assertClose(gx, numGrad((xx) => dot(reluPoolRef(xx, shape, 2), r), xs), { ...TOL, label: "gx" });
  x.dispose();
  y.dispose();
});

/** relu(x·Wᵀ + b) in float64; x [n, k], w [m, k]. */
function linearReluRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
) {
  const m = b.length;
  const k = w.length / m;
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = b[j];
      for (let q = 0; q < k; q++) s += x[i * k + q] * w[j * k + q];
      y[i * m + j] = Math.max(0, s);
    }
  }
  return y;
}

for (const [n, k, m] of [[5, 12, 8], [7, 10, 6]]) {
  Deno.test(`linearRelu [${n},${k}]·[${m},${k}]ᵀ: forward, masked dx, unfused dW and db`, async () => {
    await gpuReady;
    const xs = randArray(n * k, 7);
    const ws = randArray(m * k, 8);
    const bs = randArray(m, 9, -0.3, 0.3);
    const x = Tensor.from(xs, [n, k]);
    const w = Tensor.from(ws, [m, k]);
    const b = Tensor.from(bs, [m]);
    const ref = linearReluRef(xs, ws, bs, n);
    const y = linearRelu(x, w, b);
    assertClose(await y.read(), ref, { ...TOL, label: "forward" });
    const r = randArray(n * m, 10);
    x.requiresGrad = true;
    const [gx] = await tapeGrads(() => linearRelu(x, w, b), r, [x]);
    const fx = numGrad((xx) => dot(linearReluRef(xx, ws, bs, n), r), xs);
    assertClose(gx, fx, { ...TOL, label: "gx (masked load)" });
    w.requiresGrad = true;
    b.requiresGrad = true;
    const [gx2, gw, gb] = await tapeGrads(() => linearRelu(x, w, b), r, [x, w, b]);
    assertClose(gx2, fx, { ...TOL, label: "gx (unfused)" });
    assertClose(gw, numGrad((ww) => dot(linearReluRef(xs, ww, bs, n), r), ws), {
      ...TOL,
      label: "gw",
    });
    assertClose(gb, numGrad((bb) => dot(linearReluRef(xs, ws, bb, n), r), bs), {
      ...TOL,
      label: "gb",
    });
    for (const t of [x, w, b, y]) t.dispose();
  });
}

for (const strategy of ["register", "tiled"] as MatmulStrategy[]) {
  Deno.test(`matmul ${strategy}: fused ReLU epilogue and ReLU-masked A match float64`, async () => {
    await gpuReady;
    const [m, k, n] = [9, 8, 12];
    const as = randArray(m * k, 11);
    const ms = randArray(m * k, 12);
    const bs = randArray(k * n, 13);
    const [a, mask, b] = [
      Tensor.from(as, [m, k]),
      Tensor.from(ms, [m, k]),
      Tensor.from(bs, [k, n]),
    ];
    const ref = (relu: boolean, masked: boolean) => {
      const c = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let q = 0; q < k; q++) {
            s += (masked && ms[i * k + q] <= 0 ? 0 : as[i * k + q]) * bs[q * n + j];
          }
          c[i * n + j] = relu ? Math.max(0, s) : s;
        }
      }
      return c;
    };
    for (const [relu, masked] of [[true, false], [false, true], [true, true]]) {
      const c = matmul(a, b, { strategy, relu, reluMaskA: masked ? mask : null });
      assertClose(await c.read(), ref(relu, masked), {
        ...TOL,
        label: `relu ${relu} mask ${masked}`,
      });
      c.dispose();
    }
    for (const t of [a, mask, b]) t.dispose();
  });
}

/** mean_n KL(p_n ‖ softmax((x_n·Wᵀ + b)/τ)) in float64. */
function headRef(
  p: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  tau: number,
) {
  const k = b.length;
  const m = w.length / k;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: k }, (_, j) => {
      let s = b[j];
      for (let q = 0; q < m; q++) s += x[i * m + q] * w[j * m + q];
      return s / tau;
    });
    const mx = Math.max(...z);
    const lse = mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0));
    for (let j = 0; j < k; j++) {
      const pj = p[i * k + j];
      if (pj > 0) loss += pj * (Math.log(pj) - (z[j] - lse));
    }
  }
  return loss / n;
}

for (const [n, m, k, tau] of [[6, 12, 10, 2], [300, 8, 3, 20]]) {
  Deno.test(`linearKlDivLoss n ${n}, M ${m}, K ${k}, τ ${tau}: loss and dx match float64`, async () => {
    await gpuReady;
    const xs = randArray(n * m, 14);
    const ws = randArray(k * m, 15);
    const bs = randArray(k, 16);
    const ps = new Float32Array(n * k);
    const raw = randArray(n * k, 17, 0, 1);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += raw[i * k + j] ** 4;
      for (let j = 0; j < k; j++) ps[i * k + j] = raw[i * k + j] ** 4 / s;
    }
    ps[0] = 0; // a zero target (0·log 0 = 0)
    const [p, x, w, b] = [
      Tensor.from(ps, [n, k]),
      Tensor.from(xs, [n, m]),
      Tensor.from(ws, [k, m]),
      Tensor.from(bs, [k]),
    ];
    x.requiresGrad = true;
    const { loss, gx } = tidy(() => {
      const tape = new Tape();
      const loss = tape.run(() => linearKlDivLoss(p, x, w, b, tau));
      return { loss, gx: tape.backward(loss, [x]).get(x)! };
    });
    const ref = headRef(ps, xs, ws, bs, n, tau);
    assertNear((await loss.read())[0], ref, 1e-5 + 1e-4 * Math.abs(ref), "loss");
    const fd = numGrad((xx) => headRef(ps, xx, ws, bs, n, tau), xs);
    assertClose(await gx.read(), fd, { atol: 1e-6, rtol: 1e-3, label: "dx" });
    for (const t of [p, x, w, b, loss, gx]) t.dispose();
  });
}

/** τ² · mean_n CE(softmax(t_n/τ), softmax((h_n·Wᵀ + b)/τ)) in float64. */
function kdHeadRef(
  t: ArrayLike<number>,
  h: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  tau: number,
) {
  const k = b.length;
  const m = w.length / k;
  const logSoftmax = (z: number[]) => {
    const mx = Math.max(...z);
    const lse = mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0));
    return z.map((v) => v - lse);
  };
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const zs = Array.from({ length: k }, (_, j) => {
      let s = b[j];
      for (let q = 0; q < m; q++) s += h[i * m + q] * w[j * m + q];
      return s / tau;
    });
    const lt = logSoftmax(Array.from({ length: k }, (_, j) => t[i * k + j] / tau));
    const ls = logSoftmax(zs);
    for (let j = 0; j < k; j++) loss -= Math.exp(lt[j]) * ls[j];
  }
  return (tau * tau * loss) / n;
}

for (const [n, m, k, tau] of [[6, 12, 10, 2], [130, 8, 3, 4]]) {
  Deno.test(`linearKdLoss n ${n}, M ${m}, K ${k}, τ ${tau}: loss, dh, dW and db match float64`, async () => {
    await gpuReady;
    const [ts, hs, ws, bs] = [
      randArray(n * k, 24, -5, 5),
      randArray(n * m, 25),
      randArray(k * m, 26),
      randArray(k, 27),
    ];
    const [t, h, w, b] = [
      Tensor.from(ts, [n, k]),
      Tensor.from(hs, [n, m]),
      Tensor.from(ws, [k, m]),
      Tensor.from(bs, [k]),
    ];
    for (const x of [h, w, b]) x.requiresGrad = true;
    const got = tidy(() => {
      const tape = new Tape();
      const loss = tape.run(() => linearKdLoss(t, h, w, b, tau));
      const g = tape.backward(loss, [h, w, b]);
      return { loss, gh: g.get(h)!, gw: g.get(w)!, gb: g.get(b)! };
    });
    const ref = kdHeadRef(ts, hs, ws, bs, n, tau);
    assertNear((await got.loss.read())[0], ref, 1e-5 + 1e-4 * Math.abs(ref), "loss");
    const fd = (name: string, x: Float32Array, f: (v: Float64Array) => number) =>
      [name, numGrad(f, x)] as const;
    for (
      const [name, want] of [
        fd("dh", hs, (v) => kdHeadRef(ts, v, ws, bs, n, tau)),
        fd("dW", ws, (v) => kdHeadRef(ts, hs, v, bs, n, tau)),
        fd("db", bs, (v) => kdHeadRef(ts, hs, ws, v, n, tau)),
      ]
    ) {
      const g = name === "dh" ? got.gh : name === "dW" ? got.gw : got.gb;
      assertClose(await g.read(), want, { atol: 1e-5, rtol: 1e-3, label: name });
    }
    for (const x of [t, h, w, b, got.loss, got.gh, got.gw, got.gb]) x.dispose();
  });
}

Deno.test("LeNet-5 fused run and fused loss agree with the layers run one by one", async () => {
  await gpuReady;
  const model = buildModel("lenet5", 3);
  const n = 4;
  const xs = randArray(n * 32 * 32, 18, 0, 1);
  const p = Tensor.from(new Float32Array(n * 10).fill(0.1), [n, 10]);
  const x = Tensor.from(xs, [n, 1, 32, 32]);
  x.requiresGrad = true;
  const run = (fused: boolean) =>
    tidy(() => {
      const tape = new Tape();
      const loss = tape.run(() => {
        if (fused) return model.klDivLoss(x, p, 20).loss;
        let y = x;
        for (const { layer } of model.layers) y = layer.forward(y);
        return klDivLoss(p, y, 20);
      });
      return { loss, gx: tape.backward(loss, [x]).get(x)! };
    });
  const warm = run(true); // relays out the frozen conv weights once
  warm.loss.dispose();
  warm.gx.dispose();
  const d0 = runtimeStats().dispatches;
  const fused = run(true);
  const fusedDispatches = runtimeStats().dispatches - d0;
  const plain = run(false);
  assertClose(await fused.loss.read(), await plain.loss.read(), { atol: 1e-6, rtol: 1e-4 });
  const gp = await plain.gx.read();
  const scale = Math.max(...gp.map(Math.abs));
  assertClose(await fused.gx.read(), gp, { atol: 1e-4 * scale, rtol: 1e-3, label: "gx" });
  assert.ok(fusedDispatches <= 14, `fused forward + backward: ${fusedDispatches} dispatches`);
  const logits = model.run(x).y;
  let y = x;
  for (const { layer } of model.layers) y = layer.forward(y);
  assertClose(await logits.read(), await y.read(), { atol: 1e-5, rtol: 1e-4, label: "logits" });
  for (const t of [x, p, logits, y, fused.loss, fused.gx, plain.loss, plain.gx]) t.dispose();
  model.dispose();
});

import { klDivLoss } from "../src/autograd/functions.ts";

Deno.test("frozen conv weights: relaid out once, and again after every change", async () => {
  await gpuReady;
  const shape: [number, number, number, number] = [1, 2, 8, 8];
  const xs = randArray(128, 19);
  const x = Tensor.from(xs, shape);
  const w = Tensor.from(randArray(3 * 2 * 9, 20), [3, 2, 3, 3]);
  const zero = Tensor.zeros([3]);
  const ref = async () => {
    const wv = await w.read();
    const g = { name: "", x: shape, o: 3, k: 3, stride: 1, padding: 1, pool: 1 };
    return convBlockRef(xs, wv, [0, 0, 0], g); // pool 1 = relu only
  };
  const check = async (label: string) => {
    const y = conv2d(x, w, zero, { padding: 1 });
    const v = Array.from(await y.read(), (t) => Math.max(0, t));
    assertClose(v, await ref(), { ...TOL, label });
    y.dispose();
  };
  await check("first use");
  const d0 = runtimeStats().dispatches;
  conv2d(x, w, zero, { padding: 1 }).dispose();
  assert.equal(runtimeStats().dispatches - d0, 2, "cached: input preparation and convolution only");
  w.write(randArray(54, 21));
  await check("after write()");
  const [m, v] = [Tensor.zeros([54]), Tensor.zeros([54])];
  adamStep(w.reshape([54]), Tensor.from(randArray(54, 22), [54]), m, v, 1, { lr: 0.1 });
  await check("after an in-place Adam step");
  for (const t of [x, w, zero, m, v]) t.dispose();
});
