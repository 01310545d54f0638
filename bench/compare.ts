/**
 * The paper's comparison at one seed and one budget: the student distilled on transfer sets made
 * by `soft-target` (the paper's method), `softmax-space` and `noise`, and on the same number of
 * *real* training images (the upper reference a data-free method aims at), all with the same KD
 * settings. Prints a Markdown table of the students' test accuracy.
 *
 * Usage:
 *   deno run -A bench/compare.ts --teacher FILE --data DIR --samples 4000 --epochs 50 --seed 0 \
 *     [--methods soft-target,softmax-space,noise,real]
 *
 * `--methods` picks the rows (default all four; `real` alone with `--samples 60000` gives the
 * student's accuracy when distilled on the whole real training set). Other settings are the
 * defaults of `deno task synth` (src/dfkd/settings.ts), KD flips off for an MNIST teacher as there.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { distill, evaluate, synthesizeTransferSet, type TransferSet } from "../src/api.ts";
import { findDataDir, loadSplit } from "../src/data/datasets.ts";
import { DEFAULTS, METHODS } from "../src/dfkd/settings.ts";
import { initGpu } from "../src/gpu/runtime.ts";
import { loadModel } from "../src/nn/checkpoint.ts";
import { Rng } from "../src/random.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    teacher: { type: "string", default: "examples/teachers/lenet5-fashion-mnist.safetensors" },
    data: { type: "string" },
    samples: { type: "string", default: String(DEFAULTS.synthesis.samples) },
    iterations: { type: "string", default: String(DEFAULTS.synthesis.iterations) },
    epochs: { type: "string", default: String(DEFAULTS.distillation.epochs) },
    seed: { type: "string", default: "0" },
    methods: { type: "string", default: "soft-target,softmax-space,noise,real" },
  },
});

const ctx = await initGpu();
const samples = Number(values.samples);
const iterations = Number(values.iterations);
const epochs = Number(values.epochs);
const seed = Number(values.seed);
const methods = values.methods!.split(",");
const known = [...METHODS, "real"];
const unknown = methods.filter((m) => !known.includes(m));
if (unknown.length) throw new Error(`--methods: unknown ${unknown}; choose from ${known}`);
const { model: teacher, metadata } = await loadModel(values.teacher!);
const dataset = (metadata.dataset ?? "fashion-mnist") as "fashion-mnist" | "mnist";
const dir = findDataDir(dataset, values.data);
if (!dir) throw new Error(`no ${dataset} data found; pass --data DIR`);
const [train, test] = [await loadSplit(dir, "train"), await loadSplit(dir, "test")];
const teacherAcc = await evaluate(teacher, test);

const rows: string[] = [];
const run = async (label: string, transfer: TransferSet, synthSeconds: number) => {
  // The dataset's rule (no KD flips for MNIST) comes with `dataset`, as in `deno task synth`.
  const { student, seconds } = await distill(teacher, transfer, { epochs, seed, dataset });
  const acc = await evaluate(student, test);
  student.dispose();
  const row = `| ${label} | ${(acc * 100).toFixed(2)}% | ${synthSeconds.toFixed(0)} | ${
    seconds.toFixed(0)
  } |`;
  rows.push(row);
  console.error(row);
};

for (const method of METHODS) {
  if (!methods.includes(method)) continue;
  const t = await synthesizeTransferSet(teacher, { method, samples, iterations, seed });
  await run(method, t, t.seconds);
}
// The same number of real training images, drawn with the seed (labels unused: KD relabels).
if (methods.includes("real")) await runReal();

async function runReal() {
  const idx = Array.from({ length: train.count }, (_, i) => i);
  new Rng(seed).shuffle(idx);
  const per = 32 * 32;
  const images = new Float32Array(samples * per);
  for (let i = 0; i < samples; i++) {
    images.set(train.images.subarray(idx[i] * per, (idx[i] + 1) * per), i * per);
  }
  await run(`real training images`, {
    images,
    softTargets: new Float32Array(samples * 10),
    count: samples,
    seconds: 0,
  }, 0);
}

console.log(
  [
    `Teacher \`${values.teacher}\` (${dataset}, test accuracy ${
      (teacherAcc * 100).toFixed(2)
    }%), ` +
    `student ${DEFAULTS.distillation.student}; ${samples} images, ${iterations} synthesis iterations, ` +
    `${epochs} KD epochs, seed ${seed}; adapter ${ctx.description}.`,
    "",
    "| transfer set | student test accuracy | synthesis s | distillation s |",
    "|---|---|---|---|",
    ...rows,
    "",
    `Command: \`deno run -A bench/compare.ts ${Deno.args.join(" ")}\``,
  ].join("\n"),
);
