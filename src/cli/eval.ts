/**
 * `deno task eval`: top-1 accuracy of a checkpoint on a real test set.
 *
 * The checkpoint may be one of this project's (its metadata names the architecture and dataset)
 * or a plain PyTorch `state_dict` saved with `safetensors.torch.save_file`: then `--arch` names
 * the architecture, and the module names (`features.0`, `classifier.4`, `conv1`, `fc3`, under an
 * optional `module.` prefix) are mapped onto this project's.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import {
  DATASET_NAMES,
  type DatasetName,
  findDataDir,
  loadSplit,
  parseDatasetName,
} from "../data/datasets.ts";
import { architectureOf, modelFromSafetensors } from "../nn/checkpoint.ts";
import { type Architecture, ARCHITECTURES } from "../nn/models.ts";
import { CheckpointError, loadSafetensors } from "../nn/safetensors.ts";
import { evaluate } from "../nn/train.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
import { dataNotFound, datasetOfTestSet, initGpuForCli, runMain } from "./main.ts";

/** Every flag of `deno task eval`. */
export const FLAGS: Record<string, FlagSpec> = {
  model: { type: "string", help: "Checkpoint (.safetensors) to evaluate. Required." },
  arch: {
    type: "string",
    defaultText: "the checkpoint's metadata, else the one its tensor shapes fit",
    choices: ARCHITECTURES,
    help: "Architecture of the checkpoint, when its metadata names none and its tensor shapes do " +
      "not tell; wins over the metadata.",
  },
  dataset: {
    type: "string",
    defaultText: "the checkpoint's metadata, else what the --data test set looks like, else " +
      "fashion-mnist",
    help: `Dataset: ${DATASET_NAMES.join(" or ")} (also written fmnist, FashionMNIST, ` +
      "fashion_mnist, MNIST).",
  },
  data: {
    type: "string",
    defaultText: "$DFKD_DATA_DIR, /usr/share/datasets/<dataset>, ~/.cache/dfkd, ./data",
    help: "Folder holding the IDX files.",
  },
};

const KNOWN_DATASETS = `${DATASET_NAMES.join(", ")} (also written fmnist, FashionMNIST, ` +
  "fashion_mnist, MNIST)";

/**
 * Refuses a checkpoint inside the `partial/` folder of a run that holds `run.json`: such a file is
 * an unfinished run's intermediate state, not a finished model.
 *
 * @throws {UsageError} naming the run folder and how to finish it.
 */
async function refuseIntermediate(path: string): Promise<void> {
  const parent = dirname(resolve(path));
  if (basename(parent) !== "partial") return;
  const run = dirname(parent);
  try {
    if (!(await Deno.stat(join(run, "run.json"))).isFile) return;
  } catch {
    return;
  }
  throw new UsageError(
    `--model ${path} is an intermediate file of the unfinished run in ${run}, not a finished ` +
      `model; resume the run (deno task synth --resume ${run}), then evaluate ` +
      `${join(run, "student.safetensors")}`,
  );
}

/** Runs `deno task eval` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(
      helpText("Usage: deno task eval --model FILE [flags]", "Prints test accuracy.", FLAGS),
    );
    return 0;
  }
  if (!f.model) throw new UsageError("--model FILE is required");
  const path = f.model as string;
  let dataset: DatasetName | undefined;
  if (f.dataset !== undefined) {
    dataset = parseDatasetName(f.dataset as string) ?? undefined;
    if (!dataset) {
      throw new UsageError(`--dataset ${f.dataset}: unknown dataset; known: ${KNOWN_DATASETS}`);
    }
  }
  await refuseIntermediate(path);
  await initGpuForCli();
  const contents = await loadSafetensors(path);
  const arch = f.arch as Architecture | undefined;
  if (!arch && contents.metadata.arch === undefined && !architectureOf(contents.tensors)) {
    throw new CheckpointError(
      `${path}: the checkpoint names no architecture (no "arch" in its __metadata__, as in a ` +
        `plain PyTorch state_dict) and its tensor shapes fit none of ` +
        `${ARCHITECTURES.join(", ")}; pass --arch (${ARCHITECTURES.join(" or ")})`,
    );
  }
  if (!dataset && contents.metadata.dataset !== undefined) {
    dataset = parseDatasetName(contents.metadata.dataset) ?? undefined;
    if (!dataset) {
      throw new CheckpointError(
        `${path}: its metadata names dataset "${contents.metadata.dataset}", which this tool ` +
          `does not know (known: ${KNOWN_DATASETS}); pass --dataset`,
      );
    }
  }
  dataset ??= await datasetOfTestSet(f.data as string | undefined) ?? undefined;
  dataset ??= "fashion-mnist";
  const { model } = modelFromSafetensors(contents, path, { arch, requireFinite: true });
  try {
    const dir = findDataDir(dataset, f.data as string | undefined);
    if (!dir) throw dataNotFound(dataset, f.data as string | undefined);
    const test = await loadSplit(dir, "test");
    const acc = await evaluate(model, test);
    console.log(
      `${path}: ${model.arch} on ${dataset} test set (${test.count} images): ${
        (acc * 100).toFixed(2)
      }%`,
    );
  } finally {
    model.dispose();
  }
  return 0;
}

if (import.meta.main) runMain(main);
