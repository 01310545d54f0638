/**
 * Distils the bundled Fashion-MNIST teacher (LeNet-5) into a LeNet-5-half without any training
 * data, through the public API, and measures both on the real test set when one is installed.
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
console.error(`adapter: ${(await dfkd.initGpu()).description}`);
const bundled = new URL("teachers/lenet5-fashion-mnist.safetensors", import.meta.url);
const { model: teacher } = await dfkd.loadModel(Deno.args[0] ?? fileURLToPath(bundled));

const transfer = await dfkd.synthesizeTransferSet(teacher, {
  samples: size("SAMPLES", 2000),
  iterations: size("ITERATIONS", 50),
  onProgress: (p) => p.done && console.error(`synthesis: ${p.samplesDone}/${p.samples} images`),
});
const { student, finalLoss } = await dfkd.distill(teacher, transfer, {
  epochs: size("EPOCHS", 20),
  onProgress: (p) => console.error(`distillation: step ${p.step}/${p.steps}, loss ${p.loss}`),
});
console.log(`distilled on ${transfer.count} synthetic images; final KD loss ${finalLoss}`);

const dir = dfkd.findDataDir("fashion-mnist");
if (!dir) console.log("no Fashion-MNIST test set found: accuracy not measured");
else {
  const test = await dfkd.loadSplit(dir, "test", { limit: size("TEST_IMAGES", 10000) });
  for (const [name, model] of [["teacher", teacher], ["student", student]] as const) {
    console.log(`${name} test accuracy: ${(await dfkd.evaluate(model, test) * 100).toFixed(2)}%`);
  }
}
