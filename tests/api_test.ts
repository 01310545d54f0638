/**
 * The public module: what it exports, and the high-level functions at toy sizes — a teacher learns
 * a separable toy task, the transfer set is shaped, bounded, deterministic by seed and identical to
 * the one the run folder (the CLI's path) writes, distillation returns a working student, and bad
 * arguments raise RangeError before any GPU work.
 */

import assert from "node:assert/strict";
import * as mod from "../mod.ts";
import {
  buildModel,
  distill,
  evaluate,
  type LabelledImages,
  type Sequential,
  synthesizeTransferSet,
  trainTeacher,
} from "../mod.ts";
import { runDfkd } from "../src/dfkd/run.ts";
import { resolveConfig } from "../src/dfkd/settings.ts";
import { loadSafetensors } from "../src/nn/safetensors.ts";
import { gpuReady } from "./helpers.ts";

await gpuReady;

/** 10 classes, class k = a bright 6×6 square at its own position: learnable in a few epochs. */
function toyImages(n: number): LabelledImages {
  const images = new Float32Array(n * 1024);
  const labels = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const k = (labels[i] = i % 10);
    const top = 2 + (k % 5) * 6;
    const left = 4 + Math.floor(k / 5) * 12 + (i % 3); // a little variety
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 6; x++) images[i * 1024 + (top + y) * 32 + left + x] = 1;
    }
  }
  return { images, labels, count: n };
}

/** Rows of a [n, k] matrix sum to 1 within `tol`, every entry in [0, 1]. */
function assertDistributions(p: Float32Array, n: number, k: number, tol = 1e-5): void {
  assert.equal(p.length, n * k);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) {
      const v = p[i * k + j];
      assert(v >= 0 && v <= 1, `p[${i}, ${j}] = ${v}`);
      s += v;
    }
    assert(Math.abs(s - 1) <= tol, `row ${i} sums to ${s}`);
  }
}

Deno.test("mod.ts exports the public surface and no internals", () => {
  for (
    const name of [
      "trainTeacher",
      "synthesizeTransferSet",
      "distill",
      "evaluate",
      "initGpu",
      "gpuContext",
      "Tensor",
      "tidy",
      "keep",
      "loadModel",
      "loadModelFromBytes",
      "modelToBytes",
      "saveModel",
      "gridByClass",
      "imageGridRgba",
      "buildModel",
      "Sequential",
      "Conv2d",
      "Linear",
      "ReLU",
      "MaxPool2d",
      "AvgPool2d",
      "Flatten",
      "Tape",
      "noGrad",
      "linear",
      "conv2d",
      "relu",
      "maxPool2d",
      "avgPool2d",
      "reshape",
      "add",
      "klDivLoss",
      "kdLoss",
      "kdDivergence",
      "crossEntropyLoss",
      "activationLoss",
      "Adam",
      "Sgd",
      "buildFeatureModel",
      "sampleFeatures",
      "softTargets",
      "DEFAULTS",
      "SETTINGS",
      "resolveConfig",
      "presetOverrides",
      "validateConfig",
      "synthesisStage",
      "distillationStage",
      "runDfkd",
      "loadSplit",
      "findDataDir",
      "NoAdapterError",
      "CheckpointError",
      "DataError",
      "NumericalError",
    ]
  ) assert.ok(name in mod, `mod.ts does not export ${name}`);
  for (const name of ["dispatch", "bufferPool", "adamStep", "matmul", "gatherBatch"]) {
    assert.ok(!(name in mod), `mod.ts exports the internal ${name}`);
  }
});

Deno.test("trainTeacher learns a separable toy task; evaluate measures it", async () => {
  const data = toyImages(60);
  const events: number[] = [];
  const res = await trainTeacher(data, {
    epochs: 8,
    batchSize: 20,
    lr: 0.01,
    onProgress: (p) => events.push(p.loss),
  });
  try {
    assert.equal(res.model.arch, "lenet5");
    assert.equal(res.model.parameterCount(), 61706);
    assert(res.seconds > 0 && res.imagesPerSecond > 0);
    assert(Number.isFinite(res.finalLoss) && events.length > 0);
    const acc = await evaluate(res.model, data);
    assert(acc >= 0.9, `training accuracy ${acc}`);
  } finally {
    res.model.dispose();
  }
});

Deno.test("trainTeacher's input noise is seeded, reaches the batches, and rejects bad values", async () => {
  const data = toyImages(40);
  const weights = async (inputNoise: number) => {
    const { model } = await trainTeacher(data, { epochs: 1, batchSize: 20, lr: 0.01, inputNoise });
    try {
      return await model.parameters()[0].value.read();
    } finally {
      model.dispose();
    }
  };
  const noisy = await weights(0.3);
  assert.deepEqual(await weights(0.3), noisy, "same seed and noise: same weights");
  const clean = await weights(0);
  assert.notDeepEqual(clean, noisy, "the noise must reach the training batches");
  await assert.rejects(trainTeacher(data, { inputNoise: -0.1 }), RangeError);
  await assert.rejects(trainTeacher(data, { inputNoise: NaN }), RangeError);
});

Deno.test("bad arguments raise RangeError naming the argument", async () => {
  const data = toyImages(10);
  const teacher = buildModel("lenet5", 1);
  try {
    await assert.rejects(trainTeacher({ ...data, count: 11 }), RangeError);
    await assert.rejects(trainTeacher(data, { epochs: 0 }), RangeError);
    await assert.rejects(trainTeacher(data, { lr: -1 }), RangeError);
    // deno-lint-ignore no-explicit-any
    await assert.rejects(trainTeacher(data, { arch: "resnet" as any }), RangeError);
    await assert.rejects(evaluate(teacher, { ...data, count: 0 }), RangeError);
    await assert.rejects(synthesizeTransferSet(teacher, { samples: 0 }), RangeError);
    await assert.rejects(synthesizeTransferSet(teacher, { sigma: 0, samples: 2 }), RangeError);
    await assert.rejects(
      synthesizeTransferSet(teacher, { iterations: 0, samples: 2 }),
      /synthesis.iterations must be a whole number ≥ 1; got 0/,
    );
    await assert.rejects(
      synthesizeTransferSet(teacher, { layer: "conv1", samples: 2 }),
      RangeError,
    );
    await assert.rejects(synthesizeTransferSet(teacher, { layer: "fc9", samples: 2 }), RangeError);
    const set = { images: new Float32Array(5), softTargets: new Float32Array(10), count: 1 };
    await assert.rejects(distill(teacher, { ...set, seconds: 0 }), RangeError);
    const one = { ...set, images: new Float32Array(1024), seconds: 0 };
    for (const adversarial of [{ steps: -1 }, { steps: 1.5 }, { stepSize: 2 }, { fraction: NaN }]) {
      await assert.rejects(distill(teacher, one, { adversarial }), /adversarial\./);
    }
  } finally {
    teacher.dispose();
  }
});

Deno.test("synthesizeTransferSet: shapes, ranges, progress, determinism by seed", async () => {
  const teacher = buildModel("lenet5", 3);
  try {
    const opts = { samples: 10, batchSize: 4, iterations: 3, logEvery: 1 };
    const done: number[] = [];
    const shown: { images: Float32Array; softTargets: Float32Array }[] = [];
    const a = await synthesizeTransferSet(teacher, {
      ...opts,
      onProgress: (p) => {
        assert.equal(p.batches, 3);
        if (p.done) {
          done.push(p.samplesDone);
          shown.push({ images: p.images!.slice(), softTargets: p.softTargets!.slice() });
        } else {
          assert(p.iteration >= 1 && p.iteration < 3 && Number.isFinite(p.loss));
          assert.equal(p.images, undefined);
        }
      },
    });
    assert.deepEqual(done, [4, 8, 10]);
    // Each done report carries its batch: together they are the transfer set.
    assert.deepEqual(shown.map((b) => b.images.length), [4, 4, 2].map((n) => n * 32 * 32));
    assert.deepEqual(concat(shown.map((b) => b.images)), a.images);
    assert.deepEqual(concat(shown.map((b) => b.softTargets)), a.softTargets);
    assert.equal(a.count, 10);
    assert.equal(a.images.length, 10 * 32 * 32);
    assert(a.images.every((v) => v >= 0 && v <= 1));
    assert(a.seconds > 0);
    assertDistributions(a.softTargets, 10, 10);
    const b = await synthesizeTransferSet(teacher, opts);
    assert.deepEqual(b.images, a.images);
    assert.deepEqual(b.softTargets, a.softTargets);
    const c = await synthesizeTransferSet(teacher, { ...opts, seed: 1 });
    assert.notDeepEqual(c.images, a.images);
  } finally {
    teacher.dispose();
  }
});

Deno.test("synthesizeTransferSet: the noise baseline and softmax-space targets", async () => {
  const teacher = buildModel("lenet5", 4);
  try {
    const noise = await synthesizeTransferSet(teacher, { method: "noise", samples: 6 });
    assertDistributions(noise.softTargets, 6, 10);
    const mean = noise.images.reduce((s, v) => s + v, 0) / noise.images.length;
    assert(Math.abs(mean - 0.5) < 0.02, `uniform noise has mean ${mean}`);
    const sm = await synthesizeTransferSet(teacher, {
      method: "softmax-space",
      samples: 5,
      iterations: 2,
    });
    assertDistributions(sm.softTargets, 5, 10);
  } finally {
    teacher.dispose();
  }
});

Deno.test("the API's transfer set is the one the run folder (deno task synth) writes", async () => {
  const teacher: Sequential = buildModel("lenet5", 5);
  const dir = await Deno.makeTempDir({ prefix: "dfkd-api-" });
  try {
    const synthesis = { samples: 7, batchSize: 3, iterations: 4, sigma: 2, tau: 10 };
    const distillation = { epochs: 2, batchSize: 3 };
    const api = await synthesizeTransferSet(teacher, { ...synthesis, seed: 11 });
    const apiStudent = await distill(teacher, api, { ...distillation, seed: 11 });
    const out = await runDfkd(
      resolveConfig({ overrides: { synthesis, distillation, seed: 11 } }),
      dir,
      {
        teacher,
        teacherName: "test",
        dataset: "fashion-mnist",
        testSet: null,
        testSetDir: null,
        adapter: "test",
      },
    );
    assert.equal(out.stopped, false);
    const cli = (await loadSafetensors(`${dir}/transfer-set.safetensors`)).tensors;
    assert.deepEqual(cli.images.data, api.images);
    assert.deepEqual(cli.soft_targets.data, api.softTargets);
    // And the same student, bit for bit.
    const cliStudent = (await loadSafetensors(`${dir}/student.safetensors`)).tensors;
    for (const p of apiStudent.student.parameters()) {
      assert.deepEqual(cliStudent[p.name].data, await p.value.read(), p.name);
    }
    apiStudent.student.dispose();
  } finally {
    teacher.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("distill returns a LeNet-5-half student that follows the teacher", async () => {
  const data = toyImages(40);
  const { model: teacher } = await trainTeacher(data, { epochs: 6, batchSize: 20, lr: 0.01 });
  try {
    const steps: number[] = [];
    // The toy images themselves as the transfer set: the student should pick the task up.
    const transfer = {
      images: data.images,
      softTargets: new Float32Array(0),
      count: 40,
      seconds: 0,
    };
    const res = await distill(teacher, transfer, {
      epochs: 15,
      batchSize: 20,
      lr: 0.01,
      shift: false,
      flip: false,
      onProgress: (p) => steps.push(p.step),
    });
    try {
      assert.equal(res.student.arch, "lenet5-half");
      assert.equal(res.student.parameterCount(), 35820);
      assert(Number.isFinite(res.finalLoss) && res.seconds > 0 && res.imagesPerSecond > 0);
      assert.equal(steps.at(-1), 30);
      const acc = await evaluate(res.student, data);
      assert(acc >= 0.5, `student accuracy ${acc}`);
    } finally {
      res.student.dispose();
    }
  } finally {
    teacher.dispose();
  }
});

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

Deno.test("modelToBytes: the bytes load back with loadModelFromBytes, equal to saveModel's file", async () => {
  await gpuReady;
  const model = buildModel("lenet5-half", 7);
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await mod.modelToBytes(model, { samples: 32, note: "x" });
    const { model: back, metadata } = mod.loadModelFromBytes(bytes, "student.safetensors");
    try {
      assert.deepEqual(metadata, { arch: "lenet5-half", samples: "32", note: "x" });
      const ours = model.parameters();
      for (const [i, p] of back.parameters().entries()) {
        assert.equal(p.name, ours[i].name);
        assert.deepEqual(await p.value.read(), await ours[i].value.read());
      }
    } finally {
      back.dispose();
    }
    await mod.saveModel(`${dir}/m.safetensors`, model, { samples: 32, note: "x" });
    assert.deepEqual(await Deno.readFile(`${dir}/m.safetensors`), bytes);
    assert.throws(() => mod.loadModelFromBytes(bytes.subarray(0, 20), "cut"), mod.CheckpointError);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
