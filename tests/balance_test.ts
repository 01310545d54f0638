/**
 * Class-balanced soft targets: each image takes the first feature sample of its own stream whose
 * soft target has the class it drew, so the classes come out uniform whatever the feature-space
 * model favours; a class the teacher never gives ends the search after a bounded number of rounds.
 */

import assert from "node:assert/strict";
import { targetClass } from "../src/dfkd/diagnostics.ts";
import { softTargets } from "../src/dfkd/soft_targets.ts";
import {
  classBalancedFeatures,
  imageGenerators,
  teacherFeatureModel,
} from "../src/dfkd/transfer_set.ts";
import { buildModel } from "../src/nn/models.ts";
import { gpuReady } from "./helpers.ts";

await gpuReady;

async function classesOf(
  teacher: ReturnType<typeof buildModel>,
  layer: string,
  s: Float32Array,
  n: number,
) {
  const y = softTargets(teacher, layer, s, n, 1);
  const p = await y.read();
  y.dispose();
  return Array.from({ length: n }, (_, i) => targetClass(p, i, 10));
}

Deno.test("class-balanced targets: each image gets the class it drew, uniform over classes", async () => {
  const teacher = buildModel("lenet5", 3);
  // A bias toward class 8 makes the plain feature-space samples less uniform still.
  const fc3 = teacher.parameters().find((p) => p.name === "fc3.bias")!;
  const bias = new Float32Array(10);
  bias[8] = 1.5;
  fc3.value.write(bias);
  try {
    const fm =
      (await teacherFeatureModel(teacher, { method: "soft-target", layer: "fc2", sigma: 6 }))!;
    const n = 300;
    const rngs = imageGenerators(7, 0, n);
    const s = await classBalancedFeatures(teacher, fm, rngs);
    const got = await classesOf(teacher, "fc2", s, n);
    const wanted = imageGenerators(7, 0, n).map((r) => r.fork("class").int(10));
    assert.deepEqual(got, wanted);
    const counts = new Array(10).fill(0);
    for (const c of got) counts[c]++;
    assert.ok(Math.max(...counts) < 0.2 * n, `counts ${counts}`);
    // the plain samples of the same streams are far from uniform
    const { sampleFeatures } = await import("../src/dfkd/feature_model.ts");
    const plain = new Float32Array(n * fm.k);
    imageGenerators(7, 0, n).forEach((r, j) =>
      plain.set(sampleFeatures(fm, 1, r.fork("features")), j * fm.k)
    );
    const plainCounts = new Array(10).fill(0);
    for (const c of await classesOf(teacher, "fc2", plain, n)) plainCounts[c]++;
    assert.ok(Math.max(...plainCounts) > 0.25 * n, `plain counts ${plainCounts}`);
    // one image's sample does not depend on the others
    const alone = await classBalancedFeatures(teacher, fm, imageGenerators(7, 5, 1));
    assert.deepEqual(alone, s.slice(5 * fm.k, 6 * fm.k));
  } finally {
    teacher.dispose();
  }
});

Deno.test("class-balanced targets: a class the teacher never gives ends with the last candidate", async () => {
  const teacher = buildModel("lenet5", 4);
  const fc3 = teacher.parameters().find((p) => p.name === "fc3.bias")!;
  const bias = new Float32Array(10);
  bias[2] = 1e4; // every sample is class 2
  fc3.value.write(bias);
  try {
    const fm =
      (await teacherFeatureModel(teacher, { method: "soft-target", layer: "fc2", sigma: 6 }))!;
    const s = await classBalancedFeatures(teacher, fm, imageGenerators(1, 0, 20));
    assert.ok((await classesOf(teacher, "fc2", s, 20)).every((c) => c === 2));
  } finally {
    teacher.dispose();
  }
});
