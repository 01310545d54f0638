/**
 * `deno task eval`: top-1 accuracy of a checkpoint on a real test set.
 *
 * @module
 */

import { type DatasetName, findDataDir, loadSplit, missingDataMessage } from "../data/datasets.ts";
import { initGpu } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { evaluate } from "../nn/train.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
import { runMain } from "./main.ts";

const FLAGS: Record<string, FlagSpec> = {
  model: { type: "string", help: "Checkpoint (.safetensors) to evaluate. Required." },
  dataset: {
    type: "string",
    choices: ["fashion-mnist", "mnist"],
    help: "Dataset (default: the checkpoint's metadata, else fashion-mnist).",
  },
  data: { type: "string", help: "Folder holding the IDX files (default: standard install paths)." },
};

runMain(async (args) => {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(
      helpText("Usage: deno task eval --model FILE [flags]", "Prints test accuracy.", FLAGS),
    );
    return 0;
  }
  if (!f.model) throw new UsageError("--model FILE is required");
  await initGpu();
  const { model, metadata } = await loadModel(f.model as string);
  const dataset = (f.dataset ?? metadata.dataset ?? "fashion-mnist") as DatasetName;
  const dir = findDataDir(dataset, f.data as string | undefined);
  if (!dir) throw new UsageError(missingDataMessage(dataset));
  const test = await loadSplit(dir, "test");
  const acc = await evaluate(model, test);
  console.log(
    `${f.model}: ${model.arch} on ${dataset} test set (${test.count} images): ${
      (acc * 100).toFixed(2)
    }%`,
  );
});
