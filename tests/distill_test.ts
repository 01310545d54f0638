import assert from "node:assert/strict";
import { kdLoss } from "../src/autograd/functions.ts";
import { noGrad } from "../src/autograd/tape.ts";
import { adversarialSteps } from "../src/dfkd/distill.ts";
import { buildModel } from "../src/nn/models.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { gpuReady, randArray } from "./helpers.ts";

Deno.test("adversarialSteps raise the KD loss, stay in [0, 1] and leave the student alone", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 4);
  const student = buildModel("lenet5-half", 5);
  teacher.setTrainable(false);
  student.setTrainable(true);
  const n = 16;
  const x0 = randArray(n * 32 * 32, 6, 0, 1);
  const x = Tensor.from(x0, [n, 1, 32, 32]);
  const kd = () =>
    tidy(() => noGrad(() => kdLoss(teacher.forward(x), student.forward(x), 2))).read();
  const w0 = await student.parameters()[0].value.read();
  const before = (await kd())[0];
  const steps = 3;
  const stepSize = 0.02;
  adversarialSteps(teacher, student, x, 2, { steps, stepSize, fraction: 1 });
  const after = (await kd())[0];
  assert.ok(after > before * 1.05, `KD loss ${before} -> ${after}: ascent did not raise it`);
  const x1 = await x.read();
  let moved = 0;
  for (let i = 0; i < x1.length; i++) {
    assert.ok(x1[i] >= 0 && x1[i] <= 1, `pixel ${i} = ${x1[i]} left [0, 1]`);
    const d = Math.abs(x1[i] - x0[i]);
    assert.ok(d <= steps * stepSize + 1e-6, `pixel ${i} moved ${d} > ${steps} × ${stepSize}`);
    if (d > 1e-6) moved++;
  }
  assert.ok(moved > x1.length / 2, `only ${moved} of ${x1.length} pixels moved`);
  assert.deepEqual(await student.parameters()[0].value.read(), w0, "student weights changed");
  assert.ok(
    student.parameters().every((p) => p.value.requiresGrad),
    "trainable state not restored",
  );
  assert.equal(x.requiresGrad, false);
  x.dispose();
  teacher.dispose();
  student.dispose();
});
