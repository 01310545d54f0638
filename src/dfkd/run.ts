/**
 * A whole data-free distillation run in an output folder, resumable at every arrow of the data
 * flow: teacher → feature model → soft targets → synthesis (per batch) → transfer set →
 * distillation (per epoch) → student + report.
 *
 * Folder layout (every file is written under a temporary name and renamed):
 * - `run.json`: the configuration (read back by `--resume`);
 * - `partial/`: finished synthesis batches and the student after its last finished epoch;
 * - `transfer-set.safetensors`: `images [N,1,32,32]`, `soft_targets [N,10]`;
 * - `samples.png`: one row per class (by soft-target argmax);
 * - `student.safetensors`: the distilled student;
 * - `losses.csv`: every logged loss;
 * - `metrics.json`: written last; its presence marks a finished run.
 *
 * @module
 */

import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  saveSafetensors,
} from "../nn/safetensors.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { imageGridPng } from "../io/png.ts";
import type { Sequential } from "../nn/layers.ts";
import { buildModel } from "../nn/models.ts";
import { evaluate, type LabelledImages } from "../nn/train.ts";
import { Rng } from "../random.ts";
import { noGrad } from "../autograd/tape.ts";
import { saveModel } from "../nn/checkpoint.ts";
import { softmax } from "../ops/softmax.ts";
import { Tensor, tidy } from "../tensor.ts";
import type { DfkdConfig } from "./config.ts";
import { distill, type DistillState } from "./distill.ts";
import { buildFeatureModel, type FeatureModel, sampleFeatures } from "./feature_model.ts";
import { softTargets } from "./soft_targets.ts";
import { synthesizeBatch } from "./synthesis.ts";

/** Raised for an output folder that cannot be used (finished run without --force, bad resume). */
export class RunFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RunFolderError";
  }
}

/** The report of a finished run (also written to `metrics.json`). */
export interface RunMetrics {
  teacher_test_accuracy: number | null;
  student_test_accuracy: number | null;
  transfer_set_size: number;
  synthesis_iterations: number;
  synthesis_seconds: number;
  distillation_seconds: number;
  /** Sample-iterations per second of synthesis. */
  synthesis_throughput: number;
  /** Images per second of distillation. */
  distillation_throughput: number;
  method: string;
  layer: string;
  teacher: string;
  dataset: string;
  adapter: string;
  student_parameters: number;
  test_set: string | null;
  flags: DfkdConfig;
}

/** Progress events of a run. */
export type RunEvent =
  | { phase: "synthesis"; samplesDone: number; samples: number; loss: number; resumed: boolean }
  | { phase: "distillation"; step: number; steps: number; loss: number; resumed: boolean }
  | { phase: "message"; text: string };

/** What a run needs besides its configuration. */
export interface RunContext {
  teacher: Sequential;
  /** Path or name of the teacher, for the report. */
  teacherName: string;
  dataset: string;
  /** The real test set, or null when none was found (accuracy is then not measured). */
  testSet: LabelledImages | null;
  testSetDir: string | null;
  adapter: string;
  onEvent?: (e: RunEvent) => void;
  /** Checked between steps; true stops the run after saving finished work. */
  shouldStop?: () => boolean;
}

/** Result of {@link runDfkd}: metrics when finished, or `stopped` after an interruption. */
export type RunOutcome = { stopped: false; metrics: RunMetrics } | { stopped: true };

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `dir` holds a finished run (`metrics.json`). */
export function isFinishedRun(dir: string): Promise<boolean> {
  return exists(join(dir, "metrics.json"));
}

/** Reads the configuration of the run in `dir`. @throws {RunFolderError} if there is none. */
export async function readRunConfig(dir: string): Promise<DfkdConfig & { teacher?: string }> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, "run.json"))).config;
  } catch {
    throw new RunFolderError(`${dir} holds no run to resume (no readable run.json)`);
  }
}

/** The feature model of the method's layer, or null for the `noise` method. */
export async function teacherFeatureModel(
  teacher: Sequential,
  cfg: DfkdConfig,
): Promise<FeatureModel | null> {
  if (cfg.method === "noise") return null;
  const layer = cfg.method === "softmax-space" ? teacher.layers.at(-1)!.name : cfg.layer;
  const l = teacher.layers[teacher.indexOf(layer)].layer;
  if (l.kind !== "linear") {
    throw new RangeError(`--layer ${layer} is a ${l.kind} layer; choose a fully connected layer`);
  }
  const w = l.params().weight;
  const [k, inFeatures] = w.shape;
  return buildFeatureModel(layer, await w.read(), k, inFeatures, cfg.sigma);
}

/**
 * Runs (or resumes) synthesis and distillation in `outDir`.
 *
 * @throws {NumericalError} on a NaN/Inf loss (finished batches and epochs are kept).
 */
export async function runDfkd(
  cfg: DfkdConfig,
  outDir: string,
  ctx: RunContext,
): Promise<RunOutcome> {
  const partial = join(outDir, "partial");
  await Deno.mkdir(partial, { recursive: true });
  const runJson = join(outDir, "run.json");
  if (!(await exists(runJson))) {
    await writeFileAtomic(
      runJson,
      JSON.stringify({ config: cfg, teacher: ctx.teacherName, dataset: ctx.dataset }, null, 2),
    );
  }
  const say = (text: string) => ctx.onEvent?.({ phase: "message", text });
  const log = await Deno.open(join(outDir, "losses.csv"), { create: true, append: true });
  const enc = new TextEncoder();
  if ((await log.stat()).size === 0) await log.write(enc.encode("phase,batch,epoch,step,loss\n"));
  const logLine = (s: string) => log.writeSync(enc.encode(s + "\n"));
  try {
    const { teacher } = ctx;
    teacher.setTrainable(false);
    const [c, h, w] = teacher.inputShape;
    const per = c * h * w;
    const classes = teacher.shapes(1).at(-1)!.shape[1];

    // 1–3: feature model, soft targets, synthesis, batch by batch.
    const fm = await teacherFeatureModel(teacher, cfg);
    const tsPath = join(outDir, "transfer-set.safetensors");
    let images: Float32Array;
    let targets: Float32Array;
    let synthSeconds = 0;
    const n = cfg.samples;
    if (await exists(tsPath)) {
      const ts = await loadSafetensors(tsPath);
      images = ts.tensors.images.data;
      targets = ts.tensors.soft_targets.data;
      synthSeconds = Number(ts.metadata.synthesis_seconds ?? 0);
      say(`transfer set loaded from ${tsPath}`);
    } else {
      images = new Float32Array(n * per);
      targets = new Float32Array(n * classes);
      const batches = Math.ceil(n / cfg.batchSize);
      const root = new Rng(cfg.seed);
      for (let b = 0; b < batches; b++) {
        const start = b * cfg.batchSize;
        const bn = Math.min(cfg.batchSize, n - start);
        const file = join(partial, `synth-${String(b).padStart(5, "0")}.safetensors`);
        if (await exists(file)) {
          const part = decodeSafetensors(await Deno.readFile(file), file);
          images.set(part.tensors.images.data, start * per);
          targets.set(part.tensors.soft_targets.data, start * classes);
          synthSeconds += Number(part.metadata.seconds);
          ctx.onEvent?.({
            phase: "synthesis",
            samplesDone: start + bn,
            samples: n,
            loss: Number(part.metadata.loss),
            resumed: true,
          });
          continue;
        }
        if (ctx.shouldStop?.()) return { stopped: true };
        const t0 = performance.now();
        const rng = root.fork(`synthesis-batch-${b}`);
        const res = await synthBatch(teacher, fm, cfg, bn, rng, (it, loss) => {
          logLine(`synthesis,${b},,${it},${loss}`);
          ctx.onEvent?.({
            phase: "synthesis",
            samplesDone: start + (bn * it) / Math.max(1, cfg.iterations),
            samples: n,
            loss,
            resumed: false,
          });
        }, ctx.shouldStop);
        if (!res) return { stopped: true };
        const seconds = (performance.now() - t0) / 1000;
        synthSeconds += seconds;
        await writeFileAtomic(
          file,
          encodeSafetensors({
            images: { shape: [bn, c, h, w], data: res.images },
            soft_targets: { shape: [bn, classes], data: res.targets },
          }, { seconds: String(seconds), loss: String(res.loss) }),
        );
        images.set(res.images, start * per);
        targets.set(res.targets, start * classes);
        ctx.onEvent?.({
          phase: "synthesis",
          samplesDone: start + bn,
          samples: n,
          loss: res.loss,
          resumed: false,
        });
      }
      await saveSafetensors(tsPath, {
        images: { shape: [n, c, h, w], data: images },
        soft_targets: { shape: [n, classes], data: targets },
      }, {
        method: cfg.method,
        layer: fm?.layer ?? "none",
        sigma: String(cfg.sigma),
        tau: String(cfg.tau),
        seed: String(cfg.seed),
        synthesis_seconds: String(synthSeconds),
      });
      await writeSamplesPng(join(outDir, "samples.png"), images, targets, n, classes, [c, h, w]);
      for (let b = 0; b < Math.ceil(n / cfg.batchSize); b++) {
        await Deno.remove(join(partial, `synth-${String(b).padStart(5, "0")}.safetensors`)).catch(
          () => {},
        );
      }
    }

    // 4: distillation, epoch by epoch.
    const student = buildModel(cfg.student, cfg.seed + 1);
    const studentPartial = join(partial, "student.safetensors");
    let resume: DistillState | undefined;
    let distillSeconds = 0;
    if (await exists(studentPartial)) {
      const st = await loadSafetensors(studentPartial);
      const params = student.parameters();
      for (const p of params) p.value.write(st.tensors[p.name].data);
      resume = {
        epoch: Number(st.metadata.epoch),
        t: Number(st.metadata.adam_t),
        moments: [
          ...params.map((p) => st.tensors[`adam.m.${p.name}`].data),
          ...params.map((p) => st.tensors[`adam.v.${p.name}`].data),
        ],
      };
      distillSeconds = Number(st.metadata.seconds ?? 0);
      say(`distillation resumed after epoch ${resume.epoch}`);
    }
    const stepsPerEpoch = Math.max(1, Math.floor(n / Math.min(cfg.studentBatchSize, n)));
    let epochStart = performance.now();
    const out = await distill(teacher, student, images, n, {
      epochs: cfg.studentEpochs,
      batchSize: cfg.studentBatchSize,
      lr: cfg.studentLr,
      tau: cfg.kdTau,
      shift: cfg.kdShift,
      flip: cfg.kdFlip,
      seed: cfg.seed,
      logEvery: cfg.logEvery,
    }, {
      shouldStop: ctx.shouldStop,
      onProgress: (p) => {
        logLine(`distillation,,${p.epoch},${p.step},${p.loss}`);
        ctx.onEvent?.({
          phase: "distillation",
          step: p.step,
          steps: p.steps,
          loss: p.loss,
          resumed: false,
        });
      },
      onEpochEnd: async (epoch, state) => {
        distillSeconds += (performance.now() - epochStart) / 1000;
        const s = await state();
        const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
        const params = student.parameters();
        for (const p of params) {
          tensors[p.name] = { shape: [...p.value.shape], data: await p.value.read() };
        }
        params.forEach((p, i) => {
          tensors[`adam.m.${p.name}`] = { shape: [...p.value.shape], data: s.moments[i] };
          tensors[`adam.v.${p.name}`] = {
            shape: [...p.value.shape],
            data: s.moments[params.length + i],
          };
        });
        await saveSafetensors(studentPartial, tensors, {
          arch: student.arch,
          epoch: String(epoch + 1),
          adam_t: String(s.t),
          seconds: String(distillSeconds),
        });
        epochStart = performance.now();
      },
    }, resume);
    if (out.stopped) {
      student.dispose();
      return { stopped: true };
    }
    await saveModel(join(outDir, "student.safetensors"), student, {
      dataset: ctx.dataset,
      teacher: ctx.teacherName,
      method: cfg.method,
      kd_tau: cfg.kdTau,
      epochs: cfg.studentEpochs,
      seed: cfg.seed,
    });

    // 5: evaluation on the real test set.
    let teacherAcc: number | null = null;
    let studentAcc: number | null = null;
    if (ctx.testSet) {
      teacherAcc = await evaluate(teacher, ctx.testSet);
      studentAcc = await evaluate(student, ctx.testSet);
    }
    const studentParams = student.parameterCount();
    student.dispose();
    const metrics: RunMetrics = {
      teacher_test_accuracy: teacherAcc,
      student_test_accuracy: studentAcc,
      transfer_set_size: n,
      synthesis_iterations: cfg.method === "noise" ? 0 : cfg.iterations,
      synthesis_seconds: round(synthSeconds),
      distillation_seconds: round(distillSeconds),
      synthesis_throughput: round(synthSeconds > 0 ? (n * cfg.iterations) / synthSeconds : 0),
      distillation_throughput: round(
        distillSeconds > 0
          ? (cfg.studentEpochs * stepsPerEpoch * Math.min(cfg.studentBatchSize, n)) / distillSeconds
          : 0,
      ),
      method: cfg.method,
      layer: cfg.method === "softmax-space"
        ? teacher.layers.at(-1)!.name
        : cfg.method === "noise"
        ? "none"
        : cfg.layer,
      teacher: ctx.teacherName,
      dataset: ctx.dataset,
      adapter: ctx.adapter,
      student_parameters: studentParams,
      test_set: ctx.testSetDir,
      flags: cfg,
    };
    await writeFileAtomic(join(outDir, "metrics.json"), JSON.stringify(metrics, null, 2) + "\n");
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    return { stopped: false, metrics };
  } finally {
    log.close();
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** One synthesis batch: sample features, soft targets, optimise images (or plain noise). */
async function synthBatch(
  teacher: Sequential,
  fm: FeatureModel | null,
  cfg: DfkdConfig,
  n: number,
  rng: Rng,
  onLog: (iteration: number, loss: number) => void,
  shouldStop?: () => boolean,
): Promise<{ images: Float32Array; targets: Float32Array; loss: number } | null> {
  if (!fm) {
    // The `noise` baseline: unoptimised uniform noise, labelled by the teacher at τ.
    const images = new Float32Array(n * teacher.inputShape.reduce((a, b) => a * b, 1));
    rng.fillUniform(images, 0, 1);
    const probs = tidy(() =>
      noGrad(() =>
        softmax(teacher.forward(Tensor.from(images, [n, ...teacher.inputShape])), cfg.tau)
      )
    );
    const targets = await probs.read();
    probs.dispose();
    return { images, targets, loss: 0 };
  }
  const samples = sampleFeatures(fm, n, rng.fork("features"));
  const y = softTargets(teacher, fm.layer, samples, n, cfg.tau);
  try {
    const res = await synthesizeBatch(
      teacher,
      y,
      rng.fork("pixels"),
      {
        iterations: cfg.iterations,
        lr: cfg.synthLr,
        tau: cfg.tau,
        lambdaAct: cfg.lambdaAct,
        actNorm: cfg.actNorm,
        logEvery: cfg.logEvery,
      },
      (l) => onLog(l.iteration, l.loss),
      shouldStop,
    );
    if (!res) return null;
    return { images: res.images, targets: await y.read(), loss: res.loss };
  } finally {
    y.dispose();
  }
}

/** A grid with one row per class (by soft-target argmax), up to 10 images each. */
async function writeSamplesPng(
  path: string,
  images: Float32Array,
  targets: Float32Array,
  n: number,
  classes: number,
  [c, h, w]: readonly number[],
): Promise<void> {
  const cols = 10;
  const grid = new Float32Array(classes * cols * h * w);
  const filled = new Array(classes).fill(0);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) {
      if (targets[i * classes + k] > targets[i * classes + best]) best = k;
    }
    if (filled[best] >= cols) continue;
    const slot = best * cols + filled[best]++;
    grid.set(images.subarray(i * c * h * w, i * c * h * w + h * w), slot * h * w);
  }
  await writeFileAtomic(
    path,
    imageGridPng(grid, classes * cols, h, w, classes, cols, { pad: 2, scale: 2 }),
  );
}
