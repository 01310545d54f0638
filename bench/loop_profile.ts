/**
 * Where one step of a loop goes on this adapter:
 * `deno run -A bench/loop_profile.ts [--loop synthesis|distillation] [--out FILE]`.
 *
 * The loop of `pipeline_bench.ts` (synthesis: LeNet-5 teacher, batch 256, τ 20, no activation
 * loss, no jitter; distillation: LeNet-5 → LeNet-5-half, batch 128, τ 4, no augmentation) is run
 * whole, then one step's dispatches are recorded and each is replayed alone,
 * `REPS` times per submit, so that its kernel time is measured without the loop around it. On
 * software adapters `queue.submit` runs the work on the host thread, so the submit's duration is
 * the kernels' time; the encoding time (pipeline lookup, uniform encoding, bind-group creation,
 * pass commands) is measured separately on the host. The fixed costs of the runtime (an empty
 * dispatch, a bind group, a uniform encoding, a pooled buffer) are timed in isolation too.
 *
 * Prints Markdown; `--out FILE` also writes it there (`bench/results/synthesis-profile.md`,
 * `bench/results/distillation-profile.md`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { distill } from "../src/dfkd/distill.ts";
import { synthesizeBatch } from "../src/dfkd/synthesis.ts";
import {
  bufferPool,
  dispatch,
  type DispatchRecord,
  flush,
  gpuContext,
  initGpu,
  runtimeStats,
  startDispatchTrace,
  stopDispatchTrace,
  syncGpu,
} from "../src/gpu/runtime.ts";
import { relu } from "../src/ops/elementwise.ts";
import { buildModel } from "../src/nn/models.ts";
import { Rng } from "../src/random.ts";
import { Tensor } from "../src/tensor.ts";
import { DISTILL_BATCH, SYNTH_BATCH } from "./cases.ts";
import { DISTILL_LOOP, randomSoftTargets, SYNTH_LOOP } from "./loops.ts";

const REPS = 20;
const ITERATIONS = 30;

/** A label for a recorded dispatch: kernel name, entry point and the grid. */
function label(d: DispatchRecord): string {
  const grid = typeof d.workgroups === "number" ? d.workgroups : d.workgroups.join("×");
  const c = d.kernel.constants;
  const consts = c ? " " + Object.entries(c).map(([k, v]) => `${k}=${v}`).join(",") : "";
  return `${d.kernel.name}${consts} (${grid} wg)`;
}

/**
 * CPU milliseconds this process has used, all threads (llvmpipe's included), from
 * `/proc/self/stat` (10 ms ticks); NaN where that file does not exist. Less disturbed than wall
 * time when other processes share the cores.
 */
function cpuMs(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

interface Replayed {
  /** Wall milliseconds of the submit (the kernel's run on software adapters). */
  kernelMs: number;
  /** CPU milliseconds of the submit, summed over threads. */
  kernelCpuMs: number;
  /** Host milliseconds of encoding the dispatch. */
  encodeMs: number;
}

/** Milliseconds per dispatch of `d` replayed alone, median of 5 rounds after a warm-up. */
async function replay(d: DispatchRecord): Promise<Replayed> {
  const rounds: Replayed[] = [];
  for (let round = 0; round < 6; round++) {
    await syncGpu();
    const t0 = performance.now();
    for (let r = 0; r < REPS; r++) dispatch(d.kernel, d.buffers, d.uniforms, d.workgroups);
    const t1 = performance.now();
    const c1 = cpuMs();
    flush();
    const c2 = cpuMs();
    const t2 = performance.now();
    const r = {
      kernelMs: (t2 - t1) / REPS,
      kernelCpuMs: (c2 - c1) / REPS,
      encodeMs: (t1 - t0) / REPS,
    };
    if (round > 0) rounds.push(r);
  }
  const median = (k: keyof Replayed) => rounds.map((r) => r[k]).sort((a, b) => a - b)[2];
  return {
    kernelMs: median("kernelMs"),
    kernelCpuMs: median("kernelCpuMs"),
    encodeMs: median("encodeMs"),
  };
}

/** Milliseconds of the whole trace replayed in order, one submit per pass, median of 5 rounds. */
async function replayInOrder(trace: readonly DispatchRecord[]): Promise<number> {
  const rounds: number[] = [];
  for (let round = 0; round < 6; round++) {
    await syncGpu();
    const t0 = performance.now();
    for (let r = 0; r < REPS; r++) {
      for (const d of trace) dispatch(d.kernel, d.buffers, d.uniforms, d.workgroups);
      flush();
    }
    await syncGpu();
    if (round > 0) rounds.push((performance.now() - t0) / REPS);
  }
  return rounds.sort((a, b) => a - b)[2];
}

/** Host microseconds per call of `fn`, over `n` calls after a warm-up. */
function hostUs(n: number, fn: () => void): number {
  for (let i = 0; i < 10; i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return ((performance.now() - t0) / n) * 1000;
}

/** Fixed costs of the runtime, each timed alone (µs). */
async function fixedCosts(): Promise<Record<string, number>> {
  const device = gpuContext().device;
  const tiny = Tensor.from(new Float32Array(64), [64]);
  const outs: Tensor[] = [];
  await syncGpu();
  const encode = hostUs(200, () => outs.push(relu(tiny)));
  const t0 = performance.now();
  flush();
  const submit = ((performance.now() - t0) / 210) * 1000;
  await syncGpu();
  for (const o of outs) o.dispose();
  const buf = bufferPool().acquire(4096);
  const layout = device.createBindGroupLayout({
    entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } }],
  });
  const bindGroup = hostUs(2000, () => {
    device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: buf } }] });
  });
  const acquire = hostUs(2000, () => bufferPool().release(bufferPool().acquire(4096)));
  const data = new Float32Array(64);
  const write = hostUs(2000, () => device.queue.writeBuffer(buf, 0, data));
  bufferPool().release(buf);
  tiny.dispose();
  await syncGpu();
  return {
    "empty dispatch, host encoding (pipeline, uniforms, bind group, pass)": encode,
    "empty dispatch, its share of submit (execution on llvmpipe)": submit,
    "createBindGroup alone": bindGroup,
    "pooled buffer acquire + release": acquire,
    "queue.writeBuffer of 256 bytes": write,
  };
}

interface Profile {
  wallMsPerIteration: number;
  /** Milliseconds of the whole recorded step replayed in its order (one submit), median of 5. */
  inOrderMs: number;
  dispatchesPerIteration: number;
  rows: ({ label: string } & Replayed)[];
  fixed: Record<string, number>;
}

/** The loop's step `runs` times (after a warm-up), then one step recorded. */
interface Loop {
  /** What one step is, for the heading. */
  title: string;
  /** Items (sample-iterations or images) per step. */
  perStep: number;
  unit: string;
  /** Runs `steps` steps of the loop. */
  run(steps: number): Promise<void>;
  dispose(): void;
}

function synthesisLoop(): Loop {
  const rng = new Rng(7);
  const teacher = buildModel("lenet5", 1);
  teacher.setTrainable(false);
  const targets = randomSoftTargets(rng.fork("targets"), SYNTH_BATCH, 10, SYNTH_LOOP.tau);
  return {
    title: `Synthesis iteration: LeNet-5 teacher, batch ${SYNTH_BATCH}, τ 20, no activation ` +
      "loss, no jitter",
    perStep: SYNTH_BATCH,
    unit: "sample-iterations/s",
    run: async (steps) => {
      await synthesizeBatch(teacher, targets, rng.fork(`run-${steps}`), {
        ...SYNTH_LOOP,
        iterations: steps,
      });
    },
    dispose: () => {
      targets.dispose();
      teacher.dispose();
    },
  };
}

function distillationLoop(): Loop {
  const rng = new Rng(7);
  const teacher = buildModel("lenet5", 1);
  teacher.setTrainable(false);
  const student = buildModel("lenet5-half", 2);
  const n = DISTILL_BATCH;
  const images = rng.fork("images").fillUniform(new Float32Array(ITERATIONS * n * 32 * 32), 0, 1);
  return {
    title: `Distillation step: LeNet-5 → LeNet-5-half, batch ${n}, τ 4, no augmentation`,
    perStep: n,
    unit: "images/s",
    run: async (steps) => {
      await distill(teacher, student, images, steps * n, DISTILL_LOOP);
    },
    dispose: () => {
      teacher.dispose();
      student.dispose();
    },
  };
}

async function profile(loop: Loop): Promise<Profile> {
  await loop.run(3);
  const d0 = runtimeStats().dispatches;
  const t0 = performance.now();
  await loop.run(ITERATIONS);
  const wallMsPerIteration = (performance.now() - t0) / ITERATIONS;
  const dispatchesPerIteration = (runtimeStats().dispatches - d0) / ITERATIONS;
  startDispatchTrace();
  await loop.run(1);
  const trace = stopDispatchTrace();
  const rows = [];
  for (const d of trace) rows.push({ label: label(d), ...await replay(d) });
  const inOrderMs = await replayInOrder(trace);
  const fixed = await fixedCosts();
  loop.dispose();
  return { wallMsPerIteration, inOrderMs, dispatchesPerIteration, rows, fixed };
}

function markdown(p: Profile, loop: Loop): string {
  const ctx = gpuContext();
  const kernelSum = p.rows.reduce((a, r) => a + r.kernelMs, 0);
  const cpuSum = p.rows.reduce((a, r) => a + r.kernelCpuMs, 0);
  const encodeSum = p.rows.reduce((a, r) => a + r.encodeMs, 0);
  const pct = (ms: number) => `${((100 * ms) / p.wallMsPerIteration).toFixed(1)}%`;
  const lines = [
    `## ${loop.title.split(":")[0]} profile on ${ctx.description}`,
    "",
    `${loop.title}; ${new Date().toISOString()}, load average ${Deno.loadavg()[0].toFixed(1)}.`,
    "",
    `Whole step (loop of ${ITERATIONS}, loss read every 10): ` +
    `**${p.wallMsPerIteration.toFixed(2)} ms**, ${p.dispatchesPerIteration.toFixed(1)} ` +
    `dispatches (${((loop.perStep * 1000) / p.wallMsPerIteration).toFixed(0)} ${loop.unit}).`,
    `Sum of the recorded dispatches replayed alone: kernels ${kernelSum.toFixed(2)} ms ` +
    `(${pct(kernelSum)}; ${cpuSum.toFixed(1)} CPU-ms over all threads), host encoding ` +
    `${encodeSum.toFixed(2)} ms (${pct(encodeSum)}); the rest ` +
    `(${(p.wallMsPerIteration - kernelSum - encodeSum).toFixed(2)} ms) is the loop's own host ` +
    "work, copies, clears, uploads and the amortised readback, and what the kernels lose run " +
    "in sequence rather than one by one: the whole recorded step replayed in its order (one " +
    `submit, ${REPS} times) takes **${p.inOrderMs.toFixed(2)} ms**.`,
    "",
    "| # | dispatch (recorded order) | kernel ms | kernel CPU-ms | share of kernel CPU | host encode ms |",
    "|---:|---|---:|---:|---:|---:|",
    ...p.rows.map((r, i) =>
      `| ${i + 1} | ${r.label} | ${r.kernelMs.toFixed(3)} | ${r.kernelCpuMs.toFixed(2)} | ` +
      `${((100 * r.kernelCpuMs) / cpuSum).toFixed(1)}% | ${r.encodeMs.toFixed(3)} |`
    ),
    "",
    "Kernel ms: wall time of the submit, median of 5 rounds of " + REPS + " replays; kernel " +
    "CPU-ms: the process's CPU time over the same submit (all threads; 10 ms ticks), which " +
    "other processes on the cores disturb less than wall time.",
    "",
    "Fixed costs of the runtime, each timed alone:",
    "",
    "| cost | µs |",
    "|---|---:|",
    ...Object.entries(p.fixed).map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`),
  ];
  return lines.join("\n") + "\n";
}

if (import.meta.main) {
  const args = parseArgs({
    options: { out: { type: "string" }, loop: { type: "string", default: "synthesis" } },
  });
  const which = args.values.loop;
  if (which !== "synthesis" && which !== "distillation") {
    console.error(`--loop must be synthesis or distillation, got ${which}`);
    Deno.exit(2);
  }
  await initGpu();
  const loop = which === "synthesis" ? synthesisLoop() : distillationLoop();
  const md = markdown(await profile(loop), loop);
  console.log(md);
  if (args.values.out) await Deno.writeTextFile(args.values.out, md);
}
