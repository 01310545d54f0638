import assert from "node:assert/strict";
import {
  activationLoss,
  crossEntropyLoss,
  kdDivergence,
  kdLoss,
  klDivLoss,
} from "../src/ops/loss.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, numGrad, randArray, rng } from "./helpers.ts";

// Tolerances (GPU f32 vs float64 reference from the same f32 inputs):
// - loss values: rtol 1e-5 plus atol 1e-5 (per-row f32 sums of K terms, then a 256-way
//   strided + tree sum; the KD loss carries tau² and is compared with rtol 1e-5 of its size);
// - activation loss over 1.2M elements: rtol 2e-5 (f32 blocked sum, ~200 sequential adds deep);
// - gradients vs central differences of the float64 loss (h = 1e-5, error ~1e-10) and vs the
//   analytic float64 gradient: atol 1e-6 · max|grad| + 1e-8, rtol 1e-4.
const LOSS_TOL = { atol: 1e-5, rtol: 1e-5 };

function gradTol(ref: ArrayLike<number>) {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  return { atol: 1e-6 * m + 1e-8, rtol: 1e-4 };
}

function logSoftmaxRow(z: ArrayLike<number>, off: number, k: number, tau: number): Float64Array {
  let m = -Infinity;
  for (let j = 0; j < k; j++) m = Math.max(m, z[off + j] / tau);
  let s = 0;
  for (let j = 0; j < k; j++) s += Math.exp(z[off + j] / tau - m);
  const lse = m + Math.log(s);
  return Float64Array.from({ length: k }, (_, j) => z[off + j] / tau - lse);
}

function klRef(p: ArrayLike<number>, z: ArrayLike<number>, n: number, k: number, tau: number) {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const lq = logSoftmaxRow(z, r * k, k, tau);
    for (let j = 0; j < k; j++) {
      const pj = p[r * k + j];
      if (pj > 0) total += pj * (Math.log(pj) - lq[j]);
    }
  }
  return total / n;
}

function kdRef(t: ArrayLike<number>, s: ArrayLike<number>, n: number, k: number, tau: number) {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const lt = logSoftmaxRow(t, r * k, k, tau);
    const ls = logSoftmaxRow(s, r * k, k, tau);
    for (let j = 0; j < k; j++) total -= Math.exp(lt[j]) * ls[j];
  }
  return (tau * tau * total) / n;
}

function kdKlRef(t: ArrayLike<number>, s: ArrayLike<number>, n: number, k: number, tau: number) {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const lt = logSoftmaxRow(t, r * k, k, tau);
    const ls = logSoftmaxRow(s, r * k, k, tau);
    for (let j = 0; j < k; j++) total += Math.exp(lt[j]) * (lt[j] - ls[j]);
  }
  return (tau * tau * total) / n;
}

function ceRef(z: ArrayLike<number>, labels: Uint32Array, n: number, k: number) {
  let total = 0;
  for (let r = 0; r < n; r++) total -= logSoftmaxRow(z, r * k, k, 1)[labels[r]];
  return total / n;
}

function actRef(a: ArrayLike<number>, n: number, norm: "sample-l1" | "element-mean") {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]);
  return -s / (norm === "sample-l1" ? n : a.length);
}

/** Random target distributions [n, k] with about a third of the entries exactly 0. */
function randDist(n: number, k: number, seed: number): Float32Array {
  const r = rng(seed);
  const p = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = Float64Array.from({ length: k }, () => (r() < 0.33 ? 0 : r()));
    if (row.every((v) => v === 0)) row[Math.floor(r() * k)] = 1;
    const s = row.reduce((a, b) => a + b, 0);
    for (let j = 0; j < k; j++) p[i * k + j] = row[j] / s;
  }
  return p;
}

function randLabels(n: number, k: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * k));
}

async function readResult(res: { loss: Tensor; grad: Tensor }): Promise<[number, Float32Array]> {
  const [l, g] = [await res.loss.read(), await res.grad.read()];
  res.loss.dispose();
  res.grad.dispose();
  return [l[0], g];
}

const shapes: [number, number][] = [[1, 1], [1, 10], [3, 10], [37, 13], [6, 2]];

for (const [n, k] of shapes) {
  for (const tau of [1, 4, 20]) {
    Deno.test(`klDivLoss and kdLoss vs float64 (N=${n}, K=${k}, tau=${tau})`, async () => {
      await gpuReady;
      const p = randDist(n, k, n * 31 + k);
      const z = randArray(n * k, n * 17 + k, -5, 5);
      const t = randArray(n * k, n * 13 + k, -5, 5);
      const [tp, tz, tt] = [Tensor.from(p, [n, k]), Tensor.from(z, [n, k]), Tensor.from(t, [n, k])];

      const [kl, klGrad] = await readResult(klDivLoss(tp, tz, tau));
      assertClose([kl], [klRef(p, z, n, k, tau)], { ...LOSS_TOL, label: "kl loss" });
      const klFd = numGrad((x) => klRef(p, x, n, k, tau), z);
      assertClose(klGrad, klFd, { ...gradTol(klFd), label: "kl grad vs fd" });
      const klAn = new Float64Array(n * k); // analytic: (Σp · q - p) / (N tau)
      for (let r = 0; r < n; r++) {
        const lq = logSoftmaxRow(z, r * k, k, tau);
        let sp = 0;
        for (let j = 0; j < k; j++) sp += p[r * k + j];
        for (let j = 0; j < k; j++) {
          klAn[r * k + j] = (sp * Math.exp(lq[j]) - p[r * k + j]) / (n * tau);
        }
      }
      assertClose(klGrad, klAn, { ...gradTol(klAn), label: "kl grad vs analytic" });

      const [kd, kdGrad] = await readResult(kdLoss(tt, tz, tau));
      const kdR = kdRef(t, z, n, k, tau);
      assertClose([kd], [kdR], { atol: 1e-5 * tau * tau, rtol: 1e-5, label: "kd loss" });
      const kdFd = numGrad((x) => kdRef(t, x, n, k, tau), z);
      assertClose(kdGrad, kdFd, { ...gradTol(kdFd), label: "kd grad vs fd" });

      const dv = kdDivergence(tt, tz, tau);
      const gt = await dv.gradTeacher.read();
      dv.gradTeacher.dispose();
      const [dvLoss, dvGrad] = await readResult(dv);
      const dvR = kdKlRef(t, z, n, k, tau);
      assertClose([dvLoss], [dvR], { atol: 1e-5 * tau * tau, rtol: 1e-5, label: "kd-kl loss" });
      const dvFdS = numGrad((x) => kdKlRef(t, x, n, k, tau), z);
      assertClose(dvGrad, dvFdS, { ...gradTol(dvFdS), label: "kd-kl grad s vs fd" });
      const dvFdT = numGrad((x) => kdKlRef(x, z, n, k, tau), t);
      assertClose(gt, dvFdT, { ...gradTol(dvFdT), label: "kd-kl grad t vs fd" });
      for (const x of [tp, tz, tt]) x.dispose();
    });
  }
}

for (const [n, k] of [[1, 1], [3, 10], [37, 13], [1, 7]] as [number, number][]) {
  Deno.test(`crossEntropyLoss vs float64 (N=${n}, K=${k})`, async () => {
    await gpuReady;
    const z = randArray(n * k, 3 * n + k, -6, 6);
    const labels = randLabels(n, k, n + 5 * k);
    const [tz, tl] = [Tensor.from(z, [n, k]), Tensor.from(labels)];
    const [ce, g] = await readResult(crossEntropyLoss(tz, tl));
    assertClose([ce], [ceRef(z, labels, n, k)], { ...LOSS_TOL, label: "ce loss" });
    const fd = numGrad((x) => ceRef(x, labels, n, k), z);
    assertClose(g, fd, { ...gradTol(fd), label: "ce grad vs fd" });
    tz.dispose();
    tl.dispose();
  });
}

Deno.test("crossEntropyLoss: a label >= K makes the loss NaN", async () => {
  await gpuReady;
  const tz = Tensor.from(randArray(30, 1), [3, 10]);
  const tl = Tensor.from(new Uint32Array([1, 10, 2]));
  const [ce] = await readResult(crossEntropyLoss(tz, tl));
  assert(Number.isNaN(ce), `expected NaN, got ${ce}`);
  tz.dispose();
  tl.dispose();
});

Deno.test("losses over 10,000 rows (evaluation-sized reduction)", async () => {
  await gpuReady;
  const [n, k, tau] = [10_000, 10, 20];
  const p = randDist(n, k, 1);
  const z = randArray(n * k, 2, -8, 8);
  const labels = randLabels(n, k, 3);
  const [tp, tz, tl] = [Tensor.from(p, [n, k]), Tensor.from(z, [n, k]), Tensor.from(labels)];
  const [kl] = await readResult(klDivLoss(tp, tz, tau));
  assertClose([kl], [klRef(p, z, n, k, tau)], { ...LOSS_TOL, label: "kl 10k" });
  const [kd] = await readResult(kdLoss(tp, tz, tau)); // any logits will do as a teacher
  assertClose([kd], [kdRef(p, z, n, k, tau)], { atol: 1e-3, rtol: 1e-5, label: "kd 10k" });
  const [ce, g] = await readResult(crossEntropyLoss(tz, tl));
  assertClose([ce], [ceRef(z, labels, n, k)], { ...LOSS_TOL, label: "ce 10k" });
  let sumG = 0; // each row's gradient sums to 0
  for (const v of g) sumG += v;
  assert(Math.abs(sumG) < 1e-6, `ce grad sums to ${sumG}`);
  for (const x of [tp, tz, tl]) x.dispose();
});

Deno.test("KL, KD and KD-KL stay finite for logits of ±1e4, tau 1..100", async () => {
  await gpuReady;
  const [n, k] = [37, 13];
  const p = randDist(n, k, 9);
  const z = randArray(n * k, 10, -1e4, 1e4);
  const t = randArray(n * k, 12, -1e4, 1e4);
  for (let j = 0; j < k; j++) z[j] = j % 2 ? 1e4 : -1e4;
  const [tp, tz, tt] = [Tensor.from(p, [n, k]), Tensor.from(z, [n, k]), Tensor.from(t, [n, k])];
  for (const tau of [1, 10, 100]) {
    const [kl, klG] = await readResult(klDivLoss(tp, tz, tau));
    const [kd, kdG] = await readResult(kdLoss(tt, tz, tau));
    assert(Number.isFinite(kl) && klG.every(Number.isFinite), `kl not finite at tau=${tau}`);
    assert(Number.isFinite(kd) && kdG.every(Number.isFinite), `kd not finite at tau=${tau}`);
    assertClose([kl], [klRef(p, z, n, k, tau)], { ...LOSS_TOL, label: `kl tau=${tau}` });
    assertClose([kd], [kdRef(t, z, n, k, tau)], { ...LOSS_TOL, label: `kd tau=${tau}` });
    const dv = kdDivergence(tt, tz, tau);
    const dvT = await dv.gradTeacher.read();
    dv.gradTeacher.dispose();
    const [dvL, dvG] = await readResult(dv);
    assert(
      Number.isFinite(dvL) && dvG.every(Number.isFinite) && dvT.every(Number.isFinite),
      `kd-kl not finite at tau=${tau}`,
    );
    assertClose([dvL], [kdKlRef(t, z, n, k, tau)], { ...LOSS_TOL, label: `kd-kl tau=${tau}` });
  }
  for (const x of [tp, tz, tt]) x.dispose();
});

for (const shape of [[1, 1], [2, 3], [3, 5, 7, 7]]) {
  for (const norm of ["sample-l1", "element-mean"] as const) {
    Deno.test(`activationLoss ${norm} vs float64 ([${shape}])`, async () => {
      await gpuReady;
      const size = shape.reduce((a, b) => a * b, 1);
      // keep |a| >= 0.01 so central differences never straddle the kink of |a| at 0
      const a = randArray(size, size, -1, 1).map((v) => (v < 0 ? v - 0.01 : v + 0.01));
      const ta = Tensor.from(a, shape);
      const [l, g] = await readResult(activationLoss(ta, norm));
      assertClose([l], [actRef(a, shape[0], norm)], { ...LOSS_TOL, label: "act loss" });
      const fd = numGrad((x) => actRef(x, shape[0], norm), a);
      assertClose(g, fd, { ...gradTol(fd), label: "act grad vs fd" });
      ta.dispose();
    });
  }
}

Deno.test("activationLoss over 256x6x28x28 (1.2M elements), both norms", async () => {
  await gpuReady;
  const shape = [256, 6, 28, 28];
  const size = 256 * 6 * 28 * 28;
  const a = randArray(size, 77, -2, 3);
  a[5] = 0; // sign(0) = 0
  const ta = Tensor.from(a, shape);
  for (const norm of ["sample-l1", "element-mean"] as const) {
    const [l, g] = await readResult(activationLoss(ta, norm));
    assertClose([l], [actRef(a, 256, norm)], { atol: 0, rtol: 2e-5, label: `act 1.2M ${norm}` });
    const c = norm === "sample-l1" ? 1 / 256 : 1 / size;
    const expect = Float64Array.from(a, (v) => -Math.sign(v) * c);
    assertClose(g, expect, { atol: 0, rtol: 1e-6, label: `act grad ${norm}` });
  }
  ta.dispose();
});

Deno.test("losses reject bad shapes, dtypes and temperatures", async () => {
  await gpuReady;
  const a = Tensor.zeros([2, 3]);
  const b = Tensor.zeros([3, 2]);
  const lab = Tensor.from(new Uint32Array([0, 1]));
  const labBad = Tensor.from(new Uint32Array([0, 1, 2]));
  const labF = Tensor.zeros([2]);
  const empty = Tensor.zeros([0, 3]);
  assert.throws(() => klDivLoss(a, b, 1), RangeError);
  assert.throws(() => klDivLoss(a, a, 0), RangeError);
  assert.throws(() => kdLoss(a, b, 2), RangeError);
  assert.throws(() => kdLoss(a, a, NaN), RangeError);
  assert.throws(() => kdDivergence(a, b, 2), RangeError);
  assert.throws(() => kdDivergence(a, a, 0), RangeError);
  assert.throws(() => crossEntropyLoss(a, labBad), RangeError);
  assert.throws(() => crossEntropyLoss(a, labF), RangeError);
  assert.throws(() => crossEntropyLoss(empty, lab), RangeError);
  assert.throws(() => activationLoss(empty, "sample-l1"), RangeError);
  assert.throws(() => activationLoss(a, "l2" as "sample-l1"), RangeError);
  for (const t of [a, b, lab, labBad, labF, empty]) t.dispose();
});

Deno.test("sum reduction: the loss is N × the mean, each sample's gradient the same at any N", async () => {
  await gpuReady;
  const [n, k, tau] = [7, 10, 20];
  const p = randDist(n, k, 5);
  const z = randArray(n * k, 6, -5, 5);
  const [tp, tz] = [Tensor.from(p, [n, k]), Tensor.from(z, [n, k])];
  const [mean] = await readResult(klDivLoss(tp, tz, tau));
  const [sum, grad] = await readResult(klDivLoss(tp, tz, tau, "sum"));
  assertClose([sum], [mean * n], { ...LOSS_TOL, label: "kl sum" });
  // The first row alone gives the bitwise same gradient row.
  const [t1, z1] = [Tensor.from(p.slice(0, k), [1, k]), Tensor.from(z.slice(0, k), [1, k])];
  const [, g1] = await readResult(klDivLoss(t1, z1, tau, "sum"));
  assert.deepEqual(g1, grad.slice(0, k));
  const a = randArray(n * 3 * 4, 8, -1, 1);
  const ta = Tensor.from(a, [n, 3, 4]);
  const a1 = Tensor.from(a.slice(0, 12), [1, 3, 4]);
  for (const norm of ["sample-l1", "element-mean"] as const) {
    const [lm] = await readResult(activationLoss(ta, norm));
    const [ls, gs] = await readResult(activationLoss(ta, norm, "sum"));
    assertClose([ls], [lm * n], { ...LOSS_TOL, label: `act sum ${norm}` });
    const [, g] = await readResult(activationLoss(a1, norm, "sum"));
    assert.deepEqual(g, gs.slice(0, 12), norm);
  }
  for (const x of [tp, tz, t1, z1, ta, a1]) x.dispose();
});
