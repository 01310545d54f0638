/**
 * The two loops the pipeline benchmarks time, written once for `pipeline_bench.ts` and
 * `loop_profile.ts`: their settings and the random soft targets synthesis is run toward.
 *
 * @module
 */

import type { Rng } from "../src/random.ts";
import { Tensor } from "../src/tensor.ts";
import { DISTILL_BATCH, LOG_EVERY } from "./cases.ts";

/** Synthesis: Adam 0.05 on the pixels, τ 20, no activation loss, no prior, no jitter. */
export const SYNTH_LOOP = {
  lr: 0.05,
  tau: 20,
  lambdaAct: 0,
  actNorm: "element-mean" as const,
  logEvery: LOG_EVERY,
};

/** Distillation: one epoch, batch {@link DISTILL_BATCH}, Adam 0.002, τ 4, no augmentation. */
export const DISTILL_LOOP = {
  epochs: 1,
  batchSize: DISTILL_BATCH,
  lr: 0.002,
  tau: 4,
  shift: false,
  flip: false,
  mixup: false,
  seed: 0,
  logEvery: LOG_EVERY,
};

/**
 * Soft targets `[n, classes]` at `tau` from logits drawn N(0, 6²) by `rng` (their values do not
 * change the cost of synthesis).
 */
export function randomSoftTargets(rng: Rng, n: number, classes: number, tau: number): Tensor {
  const logits = rng.fillNormal(new Float32Array(n * classes), 0, 6);
  const probs = new Float32Array(logits.length);
  for (let r = 0; r < n; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    const max = Math.max(...row);
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      sum += probs[r * classes + c] = Math.exp((row[c] - max) / tau);
    }
    for (let c = 0; c < classes; c++) probs[r * classes + c] /= sum;
  }
  return Tensor.from(probs, [n, classes]);
}
