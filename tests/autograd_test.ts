import assert from "node:assert/strict";
import { add, crossEntropyLoss, linear, relu } from "../src/autograd/functions.ts";
import { noGrad, Tape } from "../src/autograd/tape.ts";
import { buildModel } from "../src/nn/models.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { assertNear, gpuReady, randArray, rng } from "./helpers.ts";

async function scalar(t: Tensor): Promise<number> {
  const v = (await t.read())[0];
  t.dispose();
  return v;
}

Deno.test("tape accumulates the gradient of a tensor used twice", async () => {
  await gpuReady;
  // L = CE(relu(x·Wᵀ) + x·Wᵀ): W is used twice; compare with finite differences.
  const x = Tensor.from(randArray(3 * 4, 1), [3, 4]);
  const w = Tensor.from(randArray(5 * 4, 2), [5, 4]);
  const labels = Tensor.from(new Uint32Array([0, 3, 4]));
  w.requiresGrad = true;
  const loss = (wt: Tensor) => {
    const h = linear(x, wt, null);
    return crossEntropyLoss(add(relu(h), h), labels);
  };
  const tape = new Tape();
  const g = tidy(() => {
    const l = tape.run(() => loss(w));
    return tape.backward(l, [w]).get(w)!;
  });
  const grad = await g.read();
  const w0 = randArray(5 * 4, 2);
  const eps = 1e-2;
  for (let i = 0; i < w0.length; i++) {
    const wp = w0.slice();
    wp[i] += eps;
    const wm = w0.slice();
    wm[i] -= eps;
    const lp = await scalar(tidy(() => noGrad(() => loss(Tensor.from(wp, [5, 4])))));
    const lm = await scalar(tidy(() => noGrad(() => loss(Tensor.from(wm, [5, 4])))));
    // Tolerance: f32 central difference with eps 1e-2 on a smooth-almost-everywhere loss.
    assertNear(grad[i], (lp - lm) / (2 * eps), 2e-3, `dL/dW[${i}]`);
  }
  for (const t of [x, w, labels, g]) t.dispose();
});

Deno.test("LeNet-5 and LeNet-5-half have the published parameter counts", async () => {
  await gpuReady;
  const a = buildModel("lenet5", 0);
  const b = buildModel("lenet5-half", 0);
  assert.deepEqual(a.parameterCount(), 61_706);
  assert.deepEqual(b.parameterCount(), 35_820);
  assert.deepEqual(a.shapes(2).at(-1)!.shape, [2, 10]);
  assert.deepEqual(a.shapes(1).find((s) => s.name === "fc2")!.shape, [1, 84]);
  a.dispose();
  b.dispose();
});

Deno.test("whole-model gradient check: LeNet-5-half w.r.t. parameters and input", async () => {
  await gpuReady;
  const model = buildModel("lenet5-half", 3);
  const n = 2;
  const x = Tensor.from(randArray(n * 32 * 32, 4, 0, 1), [n, 1, 32, 32]);
  x.requiresGrad = true;
  const labels = Tensor.from(new Uint32Array([1, 7]));
  const params = model.parameters();
  const wrt = [x, ...params.map((p) => p.value)];
  model.setTrainable(true);
  const gradients = async () => {
    const tape = new Tape();
    const grads = tidy(() => {
      const l = tape.run(() => crossEntropyLoss(model.forward(x), labels));
      const g = tape.backward(l, wrt);
      return wrt.map((t) => g.get(t)!);
    });
    const out = await Promise.all(grads.map((g) => g.read()));
    grads.forEach((g) => g.dispose());
    return out;
  };
  const lossAt = async () =>
    await scalar(tidy(() => noGrad(() => crossEntropyLoss(model.forward(x), labels))));
  // LeNet is piecewise linear (ReLU, max-pool), so a finite difference may straddle kinks. We use
  // the exact identity L(θ+εd) − L(θ−εd) = ∫ ⟨∇L(θ+td), d⟩ dt over [−ε, ε], with the tape's
  // gradient evaluated at M midpoints, for a random direction d of each tensor in turn.
  // Tolerance: 1% relative + 1e-4 absolute (f32 forward; midpoint rule with M = 32).
  const r = rng(9);
  const eps = 1e-3;
  const M = 32;
  for (let i = 0; i < wrt.length; i++) {
    const t = wrt[i];
    const name = i === 0 ? "input" : params[i - 1].name;
    const v0 = await t.read();
    const d = Float32Array.from(v0, () => r() * 2 - 1);
    const at = (s: number) => t.write(v0.map((v, j) => v + s * d[j]));
    let integral = 0;
    for (let m = 0; m < M; m++) {
      at(-eps + (2 * eps * (m + 0.5)) / M);
      const g = (await gradients())[i];
      let dot = 0;
      for (let j = 0; j < d.length; j++) dot += g[j] * d[j];
      integral += dot / M;
    }
    at(eps);
    const lp = await lossAt();
    at(-eps);
    const lm = await lossAt();
    t.write(v0);
    const fd = (lp - lm) / (2 * eps);
    assert(
      Math.abs(fd - integral) <= 1e-4 + 0.01 * Math.abs(integral),
      `${name}: finite difference ${fd} vs tape ${integral}`,
    );
  }
  model.setTrainable(false);
  x.dispose();
  labels.dispose();
  model.dispose();
});

Deno.test("no-grad mode records nothing and frozen weights get no gradient", async () => {
  await gpuReady;
  const model = buildModel("lenet5-half", 1);
  const x = Tensor.from(randArray(32 * 32, 5, 0, 1), [1, 1, 32, 32]);
  x.requiresGrad = true;
  const tape = new Tape();
  tidy(() => {
    tape.run(() => noGrad(() => model.forward(x)));
  });
  assert.deepEqual(tape.size, 0);
  const res = tidy(() => {
    const l = tape.run(() => crossEntropyLoss(model.forward(x), Tensor.from(new Uint32Array([2]))));
    const w = model.parameters()[0].value;
    const g = tape.backward(l, [x, w]);
    assert.deepEqual(g.get(w), null);
    return g.get(x)!;
  });
  assert.deepEqual(res.shape, [1, 1, 32, 32]);
  res.dispose();
  x.dispose();
  model.dispose();
});
