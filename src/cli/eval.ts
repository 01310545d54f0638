/**
 * `deno task eval`: top-1 accuracy of a checkpoint on a real test set.
 *
 * @module
 */

import { type DatasetName, findDataDir, loadSplit } from "../data/datasets.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { evaluate } from "../nn/train.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
import { dataNotFound, initGpuForCli, runMain } from "./main.ts";

/** Every flag of `deno task eval`. */
export const FLAGS: Record<string, FlagSpec> = {
  model: { type: "string", help: "Checkpoint (.safetensors) to evaluate. Required." },
  dataset: {
    type: "string",
    defaultText: "the checkpoint's metadata, else fashion-mnist",
    choices: ["fashion-mnist", "mnist"],
    help: "Dataset.",
  },
  data: {
    type: "string",
    defaultText: "$DFKD_DATA_DIR, /usr/share/datasets/<dataset>, ~/.cache/dfkd, ./data",
    help: "Folder holding the IDX files.",
  },
};

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
  await initGpuForCli();
  const { model, metadata } = await loadModel(f.model as string);
  const dataset = (f.dataset ?? metadata.dataset ?? "fashion-mnist") as DatasetName;
  const dir = findDataDir(dataset, f.data as string | undefined);
  if (!dir) throw dataNotFound(dataset, f.data as string | undefined);
  const test = await loadSplit(dir, "test");
  const acc = await evaluate(model, test);
  console.log(
    `${f.model}: ${model.arch} on ${dataset} test set (${test.count} images): ${
      (acc * 100).toFixed(2)
    }%`,
  );
  return 0;
}

if (import.meta.main) runMain(main);
