/**
 * GPU memory stays flat over long loops: live bytes of the buffer pool (and the number of GPU
 * buffers ever created) do not grow with the number of synthesis iterations, distillation epochs
 * or plain tensor-op steps, and every loop gives back all it took.
 */

import assert from "node:assert/strict";
import { activationLoss, add as addFn, klDivLoss } from "../src/autograd/functions.ts";
import { Tape } from "../src/autograd/tape.ts";
import { distill } from "../src/dfkd/distill.ts";
import { synthesizeBatch } from "../src/dfkd/synthesis.ts";
import { bufferPool } from "../src/gpu/runtime.ts";
import { buildModel } from "../src/nn/models.ts";
import { add, affine, mul, relu } from "../src/ops/elementwise.ts";
import { adamStep } from "../src/ops/optim.ts";
import { softmax } from "../src/ops/softmax.ts";
import { Rng } from "../src/random.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { gpuReady, randArray } from "./helpers.ts";

const live = () => bufferPool().liveBytes;
const created = () => bufferPool().createdBuffers;

/** Soft targets for `n` images: a softmax of random logits at τ. */
function targets(n: number): Tensor {
  const z = Tensor.from(randArray(n * 10, 3, -4, 4), [n, 10]);
  const y = tidy(() => softmax(z, 4));
  z.dispose();
  return y;
}

for (const prior of [{}, { lowRes: 2, lambdaTv: 0.05, initMax: 0.1 }]) {
  const name = `synthesizeBatch ${JSON.stringify(prior)}: live bytes flat over 1,000 iterations ` +
    "and given back after";
  Deno.test(name, async () => {
    await gpuReady;
    const teacher = buildModel("lenet5", 1);
    teacher.setTrainable(false);
    const y = targets(4);
    const opts = {
      iterations: 10,
      lr: 0.05,
      tau: 20,
      lambdaAct: 0.05,
      actNorm: "sample-l1" as const,
      logEvery: 10,
      ...prior,
    };
    try {
      const before10 = live();
      const short = await synthesizeBatch(teacher, y, new Rng(1), opts);
      assert.ok(short);
      assert.equal(live(), before10, "10 iterations kept GPU memory");

      // Within the loop: the same live bytes at every logged iteration, no new GPU buffers.
      const seen = new Map<number, number>();
      const buffers = created();
      const before1000 = live();
      const long = await synthesizeBatch(
        teacher,
        y,
        new Rng(2),
        { ...opts, iterations: 1000, logEvery: 10 },
        (l) => seen.set(l.iteration, live()),
      );
      assert.ok(long && Number.isFinite(long.loss));
      assert.equal(live(), before1000, "1,000 iterations kept GPU memory");
      assert.equal(seen.size, 100);
      // Through the last iteration but one: the same live bytes at every report. The last report
      // comes when the batch's images are made: under the low-resolution parametrisation they are
      // a new tensor (the upsampled pixels, 4 bytes each), on plain pixels the pixels themselves.
      const reports = [...seen.entries()].filter(([i]) => i < 1000).map(([, b]) => b);
      assert.equal(new Set(reports).size, 1, `live bytes changed between reports: ${reports}`);
      const images = "lowRes" in prior ? y.shape[0] * 32 * 32 * 4 : 0;
      assert.equal(seen.get(1000), seen.get(10)! + images, "live bytes grew");
      assert.equal(created(), buffers, "new GPU buffers were created after warm-up");
    } finally {
      y.dispose();
      teacher.dispose();
    }
  });
}

Deno.test("the synthesis step in a 1,000-iteration loop of our own: live bytes flat", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 2);
  teacher.setTrainable(false);
  const n = 4;
  const shape = [n, 1, 32, 32];
  const y = targets(n);
  const x = Tensor.from(randArray(n * 1024, 5, 0, 1), shape);
  x.requiresGrad = true;
  const m = Tensor.zeros(shape);
  const v = Tensor.zeros(shape);
  const start = live();
  let at10 = -1;
  let buffersAt10 = -1;
  try {
    for (let it = 1; it <= 1000; it++) {
      const loss = tidy(() => {
        const tape = new Tape();
        const loss = tape.run(() => {
          const { y: z, captured } = teacher.run(x, { capture: ["conv1"] });
          return addFn(
            klDivLoss(y, z, 20),
            activationLoss(captured.get("conv1")!, "sample-l1"),
            1,
            0.05,
          );
        });
        const g = tape.backward(loss, [x]).get(x)!;
        adamStep(x, g, m, v, it, { lr: 0.05, clampMin: 0, clampMax: 1 });
        return it % 100 === 0 ? loss : undefined;
      });
      if (loss) {
        const value = (await loss.read())[0];
        loss.dispose();
        assert.ok(Number.isFinite(value), `loss ${value} at iteration ${it}`);
      }
      if (it === 10) [at10, buffersAt10] = [live(), created()];
    }
    assert.equal(at10, start, "the step kept GPU memory after 10 iterations");
    assert.equal(live(), at10, `live bytes grew from ${at10} to ${live()}`);
    assert.equal(created(), buffersAt10, "new GPU buffers were created after iteration 10");
  } finally {
    for (const t of [x, m, v, y]) t.dispose();
    teacher.dispose();
  }
});

Deno.test("distill (adversarial steps on): live bytes flat over 20 epochs and given back after", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 3);
  const student = buildModel("lenet5-half", 4);
  const count = 8;
  const images = randArray(count * 1024, 9, 0, 1);
  const atEpochEnd: number[] = [];
  const before = live();
  try {
    const res = await distill(teacher, student, images, count, {
      epochs: 20,
      batchSize: 4,
      lr: 0.002,
      tau: 4,
      shift: true,
      flip: true,
      mixup: true,
      adversarial: { steps: 2, stepSize: 0.05, fraction: 0.5 },
      seed: 0,
      logEvery: 2,
    }, {
      onEpochEnd: async (_epoch, state) => {
        // Reading the resumable state must not keep GPU memory either.
        const s = await state();
        assert.equal(s.moments.length, 2 * student.parameters().length);
        atEpochEnd.push(live());
      },
    });
    assert.equal(res.stopped, false);
    assert.ok(Number.isFinite(res.finalLoss));
    assert.equal(atEpochEnd.length, 20);
    assert.equal(atEpochEnd[19], atEpochEnd[0], `live bytes grew: ${atEpochEnd.join(", ")}`);
    assert.equal(new Set(atEpochEnd).size, 1, `live bytes changed: ${atEpochEnd.join(", ")}`);
    assert.equal(live(), before, "distillation kept GPU memory after it returned");
  } finally {
    teacher.dispose();
    student.dispose();
  }
});

Deno.test("a plain 1,000-iteration tidy loop of tensor ops: live bytes flat", async () => {
  await gpuReady;
  const n = 4097;
  let acc = Tensor.from(randArray(n, 1), [n]);
  const b = Tensor.from(randArray(n, 2), [n]);
  const start = live();
  let at10 = -1;
  let buffersAt10 = -1;
  try {
    for (let it = 1; it <= 1000; it++) {
      const next = tidy(() => affine(relu(add(mul(acc, b), acc, 0.5, 0.5)), 0.9, 0.01));
      acc.dispose();
      acc = next;
      if (it % 250 === 0) assert.ok((await acc.read()).every(Number.isFinite));
      if (it === 10) [at10, buffersAt10] = [live(), created()];
    }
    assert.equal(at10, start);
    assert.equal(live(), at10, `live bytes grew from ${at10} to ${live()}`);
    assert.equal(created(), buffersAt10, "new GPU buffers were created after iteration 10");
  } finally {
    acc.dispose();
    b.dispose();
  }
});
