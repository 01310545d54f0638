/**
 * Synthesis throughput against the synthesis batch size on this adapter: the library's synthesis
 * (`synthesizeTransferSet`, the stage `deno task synth` runs) of `SWEEP_SAMPLES` images ×
 * `SWEEP_ITERATIONS` iterations at each batch size of `SWEEP_SIZES` (comma-separated) and at
 * `auto`, in sample-iterations per second, best of `SWEEP_REPEATS`. Prints a Markdown table.
 *
 * `deno run -A bench/batch_size_sweep.ts` (defaults: 512 images × 10 iterations, sizes
 * 32,64,128,256,512, 2 repeats). Synthesis is batch invariant, so every size makes the same
 * images (checked here too).
 */

import { synthesizeTransferSet } from "../src/api.ts";
import { synthesisBatchSize } from "../src/dfkd/batch_size.ts";
import { gpuContext, initGpu } from "../src/gpu/runtime.ts";
import { buildModel } from "../src/nn/models.ts";

const env = (name: string, d: string) => Deno.env.get(name) ?? d;
const samples = Number(env("SWEEP_SAMPLES", "512"));
const iterations = Number(env("SWEEP_ITERATIONS", "10"));
const repeats = Number(env("SWEEP_REPEATS", "2"));
const sizes = env("SWEEP_SIZES", "32,64,128,256,512").split(",").map(Number);

await initGpu();
const teacher = buildModel("lenet5", 1);
const auto = synthesisBatchSize("auto", teacher, samples, gpuContext());
await synthesizeTransferSet(teacher, { samples: 8, iterations: 2, batchSize: 8 }); // warm-up
let reference: Float32Array | null = null;
const rows: string[] = [];
for (const size of [...sizes, "auto" as const]) {
  let best = 0;
  for (let r = 0; r < repeats; r++) {
    const set = await synthesizeTransferSet(teacher, { samples, iterations, batchSize: size });
    best = Math.max(best, (samples * iterations) / set.seconds);
    reference ??= set.images;
    if (!set.images.every((v, i) => v === reference![i])) {
      throw new Error(`batch size ${size} made other images`);
    }
  }
  const shown = size === "auto" ? `auto (${auto})` : String(size);
  rows.push(
    `| ${shown} | ${Math.ceil(samples / (size === "auto" ? auto : size))} | ${best.toFixed(0)} |`,
  );
}
console.log(`adapter: ${gpuContext().description}; ${samples} images × ${iterations} iterations`);
console.log("");
console.log("| batch size | batches | sample-iterations/s |");
console.log("| --- | --- | --- |");
for (const r of rows) console.log(r);
teacher.dispose();
