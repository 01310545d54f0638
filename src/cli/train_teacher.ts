/**
 * `deno task train-teacher`: trains a LeNet-5 classifier on the real training set of an
 * MNIST-family dataset and saves it as a safetensors checkpoint.
 *
 * @module
 */

import { dirname } from "node:path";
import { findDataDir, loadSplit } from "../data/datasets.ts";
import { saveModel } from "../nn/checkpoint.ts";
import { type Init, INITS } from "../nn/layers.ts";
import { type Architecture, ARCHITECTURES, buildModel } from "../nn/models.ts";
import {
  evaluate,
  LR_SCHEDULES,
  type LrSchedule,
  TEACHER_DEFAULTS as T,
  TEACHER_INPUT_NOISE,
  trainClassifier,
} from "../nn/train.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
import { dataNotFound, initGpuForCli, runMain } from "./main.ts";
import { type Progress, progressBar } from "./progress.ts";

/** Every flag of `deno task train-teacher`. */
export const FLAGS: Record<string, FlagSpec> = {
  dataset: {
    type: "string",
    default: "fashion-mnist",
    choices: ["fashion-mnist", "mnist"],
    help: "Dataset to train on.",
  },
  data: {
    type: "string",
    defaultText: "$DFKD_DATA_DIR, /usr/share/datasets/<dataset>, ~/.cache/dfkd, ./data",
    help: "Folder holding the four IDX files.",
  },
  arch: { type: "string", default: "lenet5", choices: ARCHITECTURES, help: "Architecture." },
  epochs: { type: "integer", default: T.epochs, min: 1, help: "Training epochs." },
  "batch-size": {
    type: "integer",
    default: T.batchSize,
    min: 1,
    max: 65536,
    help: "Images per step.",
  },
  lr: {
    type: "number",
    default: T.lr,
    min: 0,
    exclusiveMin: true,
    help: "Adam learning rate (the peak of the cosine schedule, or the constant rate).",
  },
  schedule: {
    type: "string",
    default: T.schedule,
    choices: LR_SCHEDULES,
    help: "Learning-rate schedule: cosine (decay to 1% of --lr) or constant.",
  },
  "weight-decay": {
    type: "number",
    default: 0,
    min: 0,
    help: "L2 weight decay added to the gradient.",
  },
  augment: { type: "boolean", default: false, help: "Random ±2-pixel shifts of training images." },
  "input-noise": {
    type: "number",
    defaultText: `${
      TEACHER_INPUT_NOISE["fashion-mnist"]
    } for fashion-mnist, ${TEACHER_INPUT_NOISE.mnist} for mnist`,
    min: 0,
    help:
      "Standard deviation of Gaussian noise added to each training pixel (0 = off); noise-trained teachers invert into transfer sets that distil better.",
  },
  init: {
    type: "string",
    default: "uniform",
    choices: INITS,
    help:
      "Weight initialisation: uniform (PyTorch's default; its teachers invert into transfer sets that distil well) or he-normal.",
  },
  seed: { type: "integer", default: 0, min: 0, help: "Seed for initialisation and shuffling." },
  out: {
    type: "string",
    defaultText: "runs/teacher-<dataset>.safetensors",
    help: "Checkpoint path.",
  },
  force: {
    type: "boolean",
    default: false,
    help: "Overwrite an existing checkpoint at --out.",
  },
};

/** Runs `deno task train-teacher` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(
      helpText("Usage: deno task train-teacher [flags]", "Trains a teacher on real data.", FLAGS),
    );
    return 0;
  }
  const dataset = f.dataset as "fashion-mnist" | "mnist";
  const inputNoise = (f["input-noise"] as number | undefined) ?? TEACHER_INPUT_NOISE[dataset];
  const dir = findDataDir(dataset, f.data as string | undefined);
  if (!dir) throw dataNotFound(dataset, f.data as string | undefined);
  const out = (f.out as string | undefined) ?? `runs/teacher-${dataset}.safetensors`;
  await checkWritableOutput(out, f.force as boolean);
  const ctx = await initGpuForCli();
  console.error(`adapter: ${ctx.description}; data: ${dir}`);
  const train = await loadSplit(dir, "train");
  const test = await loadSplit(dir, "test");
  const model = buildModel(f.arch as Architecture, f.seed as number, 10, f.init as Init);
  let bar: Progress | null = null;
  const res = await trainClassifier(model, train, {
    epochs: f.epochs as number,
    batchSize: f["batch-size"] as number,
    lr: f.lr as number,
    schedule: f.schedule as LrSchedule,
    seed: f.seed as number,
    weightDecay: f["weight-decay"] as number,
    augment: f.augment as boolean,
    inputNoise,
    onProgress: (p) => {
      bar ??= progressBar("train", p.steps, "steps");
      bar.update(p.step, { loss: p.loss, detail: `epoch ${p.epoch + 1}/${p.epochs}` });
    },
  });
  (bar as Progress | null)?.stop();
  const acc = await evaluate(model, test);
  await saveModel(out, model, {
    dataset,
    epochs: f.epochs as number,
    batch_size: f["batch-size"] as number,
    lr: f.lr as number,
    schedule: f.schedule as string,
    weight_decay: f["weight-decay"] as number,
    augment: String(f.augment),
    input_noise: inputNoise,
    init: f.init as string,
    seed: f.seed as number,
    test_accuracy: acc.toFixed(4),
  });
  console.log(
    `training: ${res.seconds.toFixed(1)} s, ${
      res.imagesPerSecond.toFixed(0)
    } images/s, final loss ${res.finalLoss.toFixed(4)}`,
  );
  console.log(`test accuracy: ${(acc * 100).toFixed(2)}% on ${test.count} images`);
  console.log(`saved: ${out}`);
  return 0;
}

/**
 * Checks, before any training, that `out` can be written: not a folder, not an existing file
 * unless `force`, and its folder creatable and writable.
 *
 * @throws {UsageError} naming the path and what to do.
 */
async function checkWritableOutput(out: string, force: boolean): Promise<void> {
  const stat = await Deno.stat(out).catch(() => null);
  if (stat?.isDirectory) {
    throw new UsageError(
      `--out ${out} is a folder; give a file name such as ${out}/teacher.safetensors`,
    );
  }
  if (stat && !force) {
    throw new UsageError(
      `--out ${out} exists; pass --force to overwrite it, or choose another --out`,
    );
  }
  const probe = `${out}.${Deno.pid}.probe.tmp`;
  try {
    await Deno.mkdir(dirname(out), { recursive: true });
    await Deno.writeFile(probe, new Uint8Array(0));
    await Deno.remove(probe);
  } catch (e) {
    throw new UsageError(
      `--out ${out}: cannot write there (${(e as Error).message}); choose a writable path`,
    );
  }
}

if (import.meta.main) runMain(main);
