/**
 * The transfer-set check: class counts, agreement and saturation against hand-counted values,
 * the warning's causes, `predict` against `evaluate`, and a run that reports a one-class
 * transfer set before distilling it; a teacher with all-zero weights is refused before synthesis.
 */

import assert from "node:assert/strict";
import { DEFAULTS, resolveConfig } from "../src/dfkd/settings.ts";
import {
  judgeAgreement,
  softTargetReport,
  transferSetStats,
  transferSetWarning,
} from "../src/dfkd/diagnostics.ts";
import { type RunContext, runDfkd } from "../src/dfkd/run.ts";
import type { Sequential } from "../src/nn/layers.ts";
import { teacherFeatureModel } from "../src/dfkd/transfer_set.ts";
import { checkNonZeroWeights } from "../src/nn/checkpoint.ts";
import { CheckpointError, decodeSafetensors } from "../src/nn/safetensors.ts";
import { buildModel } from "../src/nn/models.ts";
import { evaluate, predict } from "../src/nn/train.ts";
import { gpuReady, randArray } from "./helpers.ts";
import { inFlagTerms } from "../src/cli/synth_flags.ts";

Deno.test("transferSetStats counts classes, agreement and saturated pixels", () => {
  // Teacher classes 0, 0, 2, 1; soft-target argmaxes 0, 1, 2, 2: two agree.
  const targets = new Float32Array([
    ...[0.8, 0.1, 0.1],
    ...[0.2, 0.5, 0.3],
    ...[0.1, 0.1, 0.8],
    ...[0.3, 0.3, 0.4],
  ]);
  const images = new Float32Array([0, 0.5, 1, 0.25, 1, 1, 0.9, 0.1]); // 2 pixels each, 4 at 0 or 1
  const s = transferSetStats(new Uint32Array([0, 0, 2, 1]), targets, images, 3);
  assert.deepEqual(s.teacher_class_counts, [2, 1, 1]);
  assert.equal(s.target_agreement, 0.5);
  assert.equal(s.saturated_pixels, 0.5);
  assert.throws(
    () => transferSetStats(new Uint32Array([0, 3]), targets.subarray(0, 6), images, 3),
    /class 3 of image 1/,
  );
  assert.throws(() => transferSetStats(new Uint32Array([0]), targets, images, 3), RangeError);
  assert.throws(() => transferSetStats(new Uint32Array(0), targets, images, 3), RangeError);
});

Deno.test("judgeAgreement counts the judge's classes that match the soft targets' top-1", () => {
  // Soft-target argmaxes 0, 1, 2, 2 (the first on ties: row 4 is [0.3, 0.3, 0.4] → 2).
  const targets = new Float32Array([0.8, 0.1, 0.1, 0.2, 0.5, 0.3, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4]);
  assert.equal(judgeAgreement(new Uint32Array([0, 1, 2, 2]), targets, 3), 1);
  assert.equal(judgeAgreement(new Uint32Array([0, 0, 0, 2]), targets, 3), 0.5);
  assert.equal(judgeAgreement(new Uint32Array([1, 0, 0, 0]), targets, 3), 0);
  assert.throws(() => judgeAgreement(new Uint32Array([0]), targets, 3), RangeError);
});

Deno.test("transferSetWarning: silent up to half in one class, else names the class and a cause", () => {
  const stats = (counts: number[], saturated = 0, agreement = 0.9) => ({
    teacher_class_counts: counts,
    target_agreement: agreement,
    saturated_pixels: saturated,
    judge_agreement: null,
  });
  const cfg = { method: DEFAULTS.synthesis.method, lambdaAct: 0, sigma: 6 };
  assert.equal(transferSetWarning(stats([5, 5, 0]), cfg), null);
  const names = ["T-shirt/top", "Trouser", "Bag"];
  const act = transferSetWarning(stats([0, 1, 9], 0.99), { ...cfg, lambdaAct: 0.05 }, names);
  assert.match(act!, /90\.0% of the transfer set in one class \(Bag\)/);
  // The library names settings by key; the CLI shows them as flags.
  assert.match(act!, /99\.0% of the pixels.*synthesis\.lambdaAct 0/);
  assert.match(inFlagTerms(act!), /99\.0% of the pixels.*--lambda-act 0/);
  const sigma = transferSetWarning(stats([0, 6, 4], 0.1, 0.25), cfg);
  assert.match(
    inFlagTerms(sigma!),
    /class \(1\).*match 25\.0% of their soft targets.*--sigma \(now 6\)/,
  );
  const noise = transferSetWarning(stats([10, 0, 0]), { ...cfg, method: "noise" }, names);
  assert.match(noise!, /100\.0% .*T-shirt\/top.*`noise` baseline/);
});

Deno.test("predict agrees with evaluate and does not depend on the batch size", async () => {
  await gpuReady;
  const model = buildModel("lenet5-half", 3);
  try {
    const n = 23;
    const images = randArray(n * 1024, 7, 0, 1);
    const classes = await predict(model, images, n);
    assert.deepEqual(await predict(model, images, n, 5), classes);
    assert.ok(classes.every((c) => c < 10));
    assert.equal(await evaluate(model, { images, labels: classes, count: n }), 1);
    const other = classes.map((c) => (c + 1) % 10);
    assert.equal(await evaluate(model, { images, labels: other, count: n }), 0);
    await assert.rejects(() => predict(model, images, n + 1), /need 24576 values/);
  } finally {
    model.dispose();
  }
});

/** The context of a run of `teacher` without a test set. */
function toyContext(teacher: Sequential): RunContext {
  return {
    teacher,
    teacherName: "test",
    dataset: "fashion-mnist",
    testSet: null,
    testSetDir: null,
    adapter: "test",
  };
}

Deno.test("a run whose teacher files every image under one class warns before distilling", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 2);
  // A bias of 100 on class 8 ("Bag") outweighs anything the rest of the network adds.
  const fc3 = teacher.parameters().find((p) => p.name === "fc3.bias")!;
  const bias = new Float32Array(10);
  bias[8] = 100;
  fc3.value.write(bias);
  const dir = await Deno.makeTempDir({ prefix: "dfkd-diagnostics-" });
  const order: string[] = [];
  try {
    const out = await runDfkd(
      resolveConfig({
        overrides: {
          synthesis: { method: "noise", samples: 12, batchSize: 6 },
          distillation: { epochs: 1 },
        },
      }),
      dir,
      {
        ...toyContext(teacher),
        onEvent: (e) => order.push(e.phase === "message" ? e.text : e.phase),
      },
    );
    assert.ok(!out.stopped);
    const stats = out.metrics.transfer_set_stats;
    assert.deepEqual(stats.teacher_class_counts, [0, 0, 0, 0, 0, 0, 0, 0, 12, 0]);
    assert.equal(stats.target_agreement, 1);
    assert.equal(stats.judge_agreement, null);
    const warning = order.findIndex((t) => t.startsWith("warning:"));
    assert.match(order[warning], /100\.0% of the transfer set in one class \(Bag\)/);
    assert.ok(warning < order.indexOf("distillation"), order.join(" | "));
  } finally {
    teacher.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a run with a judge reports the share of soft-target classes the judge agrees with", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 2);
  const judge = buildModel("lenet5", 9);
  const dir = await Deno.makeTempDir({ prefix: "dfkd-judge-" });
  try {
    const cfg = resolveConfig({
      overrides: {
        synthesis: { samples: 40, batchSize: 20, iterations: 3 },
        distillation: { epochs: 1 },
      },
    });
    const ctx = toyContext(teacher);
    const out = await runDfkd(cfg, dir, { ...ctx, judge });
    assert.ok(!out.stopped);
    const images = await Deno.readFile(`${dir}/transfer-set.safetensors`);
    assert.ok(images.length > 0);
    // the expected value, from the judge's own predictions on the saved transfer set
    const { tensors } = decodeSafetensors(images);
    const x = tensors.images.data as Float32Array;
    const t = tensors.soft_targets.data as Float32Array;
    const expect = judgeAgreement(await predict(judge, x, 40), t, 10);
    assert.equal(out.metrics.transfer_set_stats.judge_agreement, expect);
    // the teacher as its own judge agrees exactly as often as the teacher check says
    await Deno.remove(dir, { recursive: true });
    const self = await runDfkd(cfg, dir, { ...ctx, judge: teacher });
    assert.ok(!self.stopped);
    const s = self.metrics.transfer_set_stats;
    assert.equal(s.judge_agreement, s.target_agreement);
  } finally {
    teacher.dispose();
    judge.dispose();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a teacher with all-zero weights is refused, not sent to synthesis with a sigma hint", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 5);
  try {
    const zero = (name: string) => {
      const p = teacher.parameters().find((q) => q.name === name)!;
      p.value.write(new Float32Array(p.value.size));
    };
    const refused = (...fragments: string[]) => (e: unknown) => {
      assert.ok(e instanceof CheckpointError, String(e));
      for (const f of fragments) assert.ok(e.message.includes(f), `no "${f}" in: ${e.message}`);
      assert.doesNotMatch(e.message, /sigma/);
      return true;
    };
    assert.notEqual(await teacherFeatureModel(teacher, DEFAULTS.synthesis), null);
    zero("fc3.weight");
    await assert.rejects(
      teacherFeatureModel(teacher, DEFAULTS.synthesis),
      refused("teacher: fc3.weight is all zero", "same for every input"),
    );
    for (const p of teacher.parameters()) zero(p.name);
    for (const method of ["soft-target", "softmax-space", "noise"] as const) {
      await assert.rejects(
        teacherFeatureModel(teacher, { ...DEFAULTS.synthesis, method }),
        refused("teacher: the weights are all zero", "untrained"),
      );
    }
  } finally {
    teacher.dispose();
  }
  const t = (data: number[]) => ({ shape: [data.length], data: Float32Array.from(data) });
  const contents = (w: number[]) => ({
    tensors: { "a.weight": t(w), "a.bias": t([0]) },
    metadata: {},
  });
  checkNonZeroWeights(contents([0, -0.5]), "x"); // one non-zero weight is enough
  assert.throws(
    () => checkNonZeroWeights(contents([0, -0]), "x.safetensors"),
    /^CheckpointError: x\.safetensors: the weights are all zero/,
  );
});

Deno.test("softTargetReport: how the targets were drawn and their largest class", () => {
  // 4 targets over 3 classes: classes 2, 0, 2, 1 (top-1 of each row).
  const targets = Float32Array.from([0.1, 0.2, 0.7, 0.5, 0.3, 0.2, 0, 0.4, 0.6, 0.2, 0.5, 0.3]);
  const pilot = { largestShare: 0.9, samples: 2048, limit: 0.8 };
  assert.deepEqual(softTargetReport("soft-target", "auto", true, pilot, targets, 3), {
    drawn: "class-balanced",
    balance_setting: "auto",
    pilot: { samples: 2048, largest_class_share: 0.9, limit: 0.8 },
    largest_class_share: 0.5,
  });
  const plain = softTargetReport("soft-target", false, false, null, targets, 3);
  assert.equal(plain.drawn, "feature-space");
  assert.equal(plain.pilot, null);
  // The noise method's targets are the teacher's predictions, whatever --balance says.
  assert.equal(softTargetReport("noise", true, false, null, targets, 3).drawn, "teacher-on-noise");
});
