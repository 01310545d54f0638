/**
 * End-to-end throughput of the two loops the product spends its time in, run through the real
 * code (`synthesizeBatch`, `distill`):
 *
 * - synthesis: LeNet-5 teacher forward, backward to the input only, Adam on the pixels with clamp
 *   to [0, 1], batch 256, τ 20, no activation term (the defaults); one timed call is one
 *   `synthesizeBatch` of `SYNTH_STEPS` iterations (noise upload and final image read included);
 * - distillation: teacher forward (relabelling) + LeNet-5-half student forward, backward and Adam,
 *   batch 128, τ 4, no augmentation; one timed call is one `distill` epoch of `DISTILL_STEPS`
 *   batches (host batch gathering and upload included).
 *
 * Both read the loss back every `LOG_EVERY` steps. When `BENCH_STATS_FILE` is set, the runtime's
 * counters over the timed calls (readback wait, wall time, submits, dispatches) are written there
 * as JSON after every call, for `report.ts` to give the fraction of wall time spent waiting.
 *
 * @module
 */

import { distill } from "../src/dfkd/distill.ts";
import { synthesizeBatch } from "../src/dfkd/synthesis.ts";
import { initGpu, runtimeStats } from "../src/gpu/runtime.ts";
import { buildModel } from "../src/nn/models.ts";
import { Rng } from "../src/random.ts";
import {
  DISTILL_BATCH,
  DISTILL_STEPS,
  PIPELINE_CASES,
  type PipelineStats,
  SYNTH_BATCH,
  SYNTH_STEPS,
} from "./cases.ts";
import { DISTILL_LOOP, randomSoftTargets, SYNTH_LOOP } from "./loops.ts";

await initGpu();

const statsFile = Deno.env.get("BENCH_STATS_FILE");
const stats: Record<string, PipelineStats> = {};

/** Times `run` between `b.start()`/`b.end()` and adds the runtime counters' deltas to `group`. */
async function timed(group: string, b: Deno.BenchContext, run: () => Promise<void>) {
  const s0 = { ...runtimeStats() };
  const t0 = performance.now();
  b.start();
  await run();
  b.end();
  const wall = performance.now() - t0;
  const s1 = runtimeStats();
  const acc = stats[group] ??= {
    calls: 0,
    wallMs: 0,
    readbackMs: 0,
    readbacks: 0,
    submits: 0,
    dispatches: 0,
  };
  acc.calls++;
  acc.wallMs += wall;
  acc.readbackMs += s1.readbackMs - s0.readbackMs;
  acc.readbacks += s1.readbacks - s0.readbacks;
  acc.submits += s1.submits - s0.submits;
  acc.dispatches += s1.dispatches - s0.dispatches;
  if (statsFile) await Deno.writeTextFile(statsFile, JSON.stringify(stats, null, 2));
}

const rng = new Rng(7);
const teacher = buildModel("lenet5", 1);
teacher.setTrainable(false);

// Synthesis toward soft targets from random logits (their values do not change the cost).
const targets = randomSoftTargets(rng.fork("targets"), SYNTH_BATCH, 10, SYNTH_LOOP.tau);
const synthOpts = { ...SYNTH_LOOP, iterations: SYNTH_STEPS };
// Untimed run: compiles every pipeline of the loop.
await synthesizeBatch(teacher, targets, rng.fork("warm"), { ...synthOpts, iterations: 2 });

Deno.bench({
  name: "ours",
  group: PIPELINE_CASES[0].group,
  n: 3,
  warmup: 0,
  async fn(b) {
    await timed(PIPELINE_CASES[0].group, b, async () => {
      const out = await synthesizeBatch(teacher, targets, rng.fork("synth"), synthOpts);
      if (!out || !Number.isFinite(out.loss)) throw new Error(`synthesis failed: ${out?.loss}`);
    });
  },
});

// Distillation on a fixed set of images in [0, 1].
const student = buildModel("lenet5-half", 2);
const count = DISTILL_BATCH * DISTILL_STEPS;
const images = rng.fork("images").fillUniform(new Float32Array(count * 32 * 32), 0, 1);
const distillOpts = DISTILL_LOOP;
await distill(teacher, student, images, 2 * DISTILL_BATCH, distillOpts);

Deno.bench({
  name: "ours",
  group: PIPELINE_CASES[1].group,
  n: 3,
  warmup: 0,
  async fn(b) {
    await timed(PIPELINE_CASES[1].group, b, async () => {
      const out = await distill(teacher, student, images, count, distillOpts);
      if (!Number.isFinite(out.finalLoss)) throw new Error(`distillation failed: ${out.finalLoss}`);
    });
  },
});
