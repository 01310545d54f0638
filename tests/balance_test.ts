/**
 * Class-balanced soft targets: each image takes the first feature sample of its own stream whose
 * soft target has the class it drew, so the classes come out uniform whatever the feature-space
 * model favours; a class the teacher never gives ends the search after a bounded number of rounds.
 */

import assert from "node:assert/strict";
import { targetClass } from "../src/dfkd/diagnostics.ts";
import { softTargets } from "../src/dfkd/soft_targets.ts";
import { sampleFeatures } from "../src/dfkd/feature_model.ts";
import {
  balancePilot,
  classBalancedFeatures,
  imageGenerators,
  PILOT_SAMPLES,
  PILOT_SKEW,
  resolveBalance,
  teacherFeatureModel,
} from "../src/dfkd/transfer_set.ts";
import { loadModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import { Rng } from "../src/random.ts";
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

Deno.test("balance auto: the pilot turns balance on for a skewed teacher only", async () => {
  const cfg = { method: "soft-target" as const, layer: "fc2", sigma: 6 };
  // A random teacher whose fc3 bias favours class 2, and the bundled MNIST teacher (its
  // feature-space model spreads its targets evenly enough).
  const skewed = buildModel("lenet5", 3);
  const bias = new Float32Array(10);
  bias[2] = 4;
  skewed.parameters().find((p) => p.name === "fc3.bias")!.value.write(bias);
  const even = (await loadModel("examples/teachers/lenet5-mnist.safetensors")).model;
  for (const [teacher, want] of [[skewed, true], [even, false]] as const) {
    try {
      const fm = (await teacherFeatureModel(teacher, cfg))!;
      const pilot = await balancePilot(teacher, fm, 5);
      // The share is that of the pilot's own samples, drawn again here.
      const samples = sampleFeatures(fm, PILOT_SAMPLES, new Rng(5).fork("balance-pilot"));
      const classes = await classesOf(teacher, "fc2", samples, PILOT_SAMPLES);
      const counts = new Array(10).fill(0);
      for (const c of classes) counts[c]++;
      assert.equal(pilot.largestShare, Math.max(...counts) / PILOT_SAMPLES);
      assert.equal(pilot.balance, pilot.largestShare > PILOT_SKEW / 10);
      assert.equal(pilot.balance, want, `largest class ${pilot.largestShare}`);
      // Same teacher and seed, same decision; a given setting is kept as it is.
      assert.deepEqual(await resolveBalance(teacher, fm, { balance: "auto" }, 5), {
        balance: want,
        pilot,
      });
      for (const b of [true, false]) {
        assert.deepEqual(await resolveBalance(teacher, fm, { balance: b }, 5), {
          balance: b,
          pilot: null,
        });
      }
      assert.deepEqual(await resolveBalance(teacher, null, { balance: "auto" }, 5), {
        balance: false,
        pilot: null,
      });
    } finally {
      teacher.dispose();
    }
  }
});
