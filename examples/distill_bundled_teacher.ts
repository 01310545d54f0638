/**
 * Distils the bundled Fashion-MNIST teacher (LeNet-5) into a LeNet-5-half without any training
 * data, through the public API, and measures both on the real test set when one is installed.
 * The README's library snippet is taken from this file.
 *
 * Usage: `deno run -A examples/distill_bundled_teacher.ts [teacher.safetensors]`
 * Sizes from the environment: `SAMPLES` (transfer-set size, default 2000), `ITERATIONS` (Adam steps
 * per synthesis batch, 50), `EPOCHS` (distillation epochs, 20), `TEST_IMAGES` (10000).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import * as dfkd from "../mod.ts";

const size = (name: string, fallback: number) => Number(Deno.env.get(name) ?? fallback);
const [samples, iterations, epochs] = [
  size("SAMPLES", 2000),
  size("ITERATIONS", 50),
  size("EPOCHS", 20),
];
const bundled = new URL("teachers/lenet5-fashion-mnist.safetensors", import.meta.url);
const file = Deno.args[0] ?? fileURLToPath(bundled);
const onBatch = (p: dfkd.SynthesisProgress) =>
  p.done && console.error(`synthesis: ${p.samplesDone}/${p.samples} images`);
const onStep = (p: dfkd.DistillProgress) =>
  console.error(`distillation: step ${p.step}/${p.steps}, loss ${p.loss}`);

console.error(`adapter: ${(await dfkd.initGpu()).description}`); // once, before any model
const { model: teacher } = await dfkd.loadModel(file); // any LeNet-5 checkpoint
const set = await dfkd.synthesizeTransferSet(teacher, { samples, iterations, onProgress: onBatch });
const { student, finalLoss } = await dfkd.distill(teacher, set, { epochs, onProgress: onStep });
const dir = dfkd.findDataDir("fashion-mnist"); // the real test set, if installed
if (dir) {
  const test = await dfkd.loadSplit(dir, "test", { limit: size("TEST_IMAGES", 10000) });
  for (const [name, model] of [["teacher", teacher], ["student", student]] as const) {
    console.log(`${name} test accuracy: ${(await dfkd.evaluate(model, test) * 100).toFixed(2)}%`);
  }
} else console.log("no Fashion-MNIST test set found: accuracy not measured");
console.log(`distilled on ${set.count} synthetic images; final KD loss ${finalLoss}`);
