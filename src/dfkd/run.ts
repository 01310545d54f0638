/**
 * A whole data-free distillation run in an output folder, resumable at every arrow of the data
 * flow: teacher → feature model → soft targets → synthesis (per batch) → transfer set →
 * distillation (per epoch) → student + report.
 *
 * Folder layout (every file is written under a temporary name and renamed, so a file that exists
 * is complete; a kill leaves at most a `*.tmp` file, removed on the next start):
 * - `run.json`: the configuration (read back by `--resume`);
 * - `partial/`: finished synthesis batches (`synth-NNNNN.safetensors`), the synthesis time
 *   (`synthesis.json`) and the student after its last finished epoch (`student.safetensors`);
 * - `transfer-set.safetensors`: `images [N,1,32,32]`, `soft_targets [N,10]`; its bytes depend only
 *   on the configuration, the teacher and the adapter (no timings), so a resumed run's file equals
 *   an uninterrupted run's;
 * - `samples.png`: one row per class (by soft-target argmax), written just before the transfer set;
 * - `student.safetensors`: the distilled student;
 * - `losses.csv`: every logged loss (a resumed run appends; an interrupted batch's rows stay);
 * - `metrics.json`: written last; its presence marks a finished run.
 *
 * The run stops between steps when {@link RunContext.shouldStop} turns true (a signal) or the GPU
 * device is lost, keeping every finished batch and epoch.
 *
 * @module
 */

import { join } from "node:path";
import { deviceLost } from "../gpu/device.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  saveSafetensors,
} from "../nn/safetensors.ts";
import { asWriteError, exists, writeFileAtomic } from "../io/atomic.ts";
import { imageGridPng } from "../io/png.ts";
import type { Sequential } from "../nn/layers.ts";
import { buildModel } from "../nn/models.ts";
import { evaluate, type LabelledImages, predict } from "../nn/train.ts";
import { CLASS_NAMES } from "../data/datasets.ts";
import { Rng } from "../random.ts";
import { saveModel } from "../nn/checkpoint.ts";
import type { DfkdConfig } from "./config.ts";
import {
  targetClass,
  type TransferSetStats,
  transferSetStats,
  transferSetWarning,
} from "./diagnostics.ts";
import { distill, type DistillState } from "./distill.ts";
import { NumericalError } from "./synthesis.ts";
import { synthesizeTransferBatch, teacherFeatureModel } from "./transfer_set.ts";
import { DeviceLostError, RunFolderError } from "../errors.ts";

export { DeviceLostError, RunFolderError };

/** The contents of `run.json`. */
export interface RunFile {
  config: DfkdConfig;
  /** Path of the teacher checkpoint (absolute when written by the CLI). */
  teacher: string;
  /** SHA-256 of the teacher file, checked on resume (absent in folders made by older versions). */
  teacher_sha256?: string;
  dataset: string;
  /**
   * Folder of the real test set the run was started with (absolute), reused on resume; null
   * when it had none (absent in folders made by older versions).
   */
  data?: string | null;
}

/** Files and folders a run writes into its output folder (what `--force` removes). */
export const RUN_ENTRIES: readonly string[] = [
  "metrics.json",
  "transfer-set.safetensors",
  "student.safetensors",
  "samples.png",
  "losses.csv",
  "run.json",
  "partial",
];

/** The report of a finished run (also written to `metrics.json`). */
export interface RunMetrics {
  teacher_test_accuracy: number | null;
  student_test_accuracy: number | null;
  transfer_set_size: number;
  synthesis_iterations: number;
  /** What the teacher makes of the transfer set (a check that it carries class information). */
  transfer_set_stats: TransferSetStats;
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
  /**
   * Checked between steps: a message when the GPU device is lost, else null. Defaults to
   * {@link deviceLost}; tests pass their own to simulate a loss.
   */
  deviceLost?: () => string | null;
}

/** Result of {@link runDfkd}: metrics when finished, or `stopped` after an interruption. */
export type RunOutcome = { stopped: false; metrics: RunMetrics } | { stopped: true };

/** Whether `dir` holds a finished run (`metrics.json`). */
export function isFinishedRun(dir: string): Promise<boolean> {
  return exists(join(dir, "metrics.json"));
}

/** Whether `dir` holds a run, finished or not (`run.json`). */
export function hasRun(dir: string): Promise<boolean> {
  return exists(join(dir, "run.json"));
}

/**
 * Reads `run.json` of the run in `dir`.
 *
 * @throws {RunFolderError} if there is none or it is unreadable.
 */
export async function readRunFile(dir: string): Promise<RunFile> {
  const path = join(dir, "run.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new RunFolderError(
        `${dir} holds no run to resume (no run.json); start a new run with --out ${dir}`,
      );
    }
    throw new RunFolderError(
      `${path} cannot be read (${(e as Error).message}); fix its permissions, or start the run ` +
        `over with --out ${dir} --force`,
    );
  }
  let run: RunFile;
  try {
    run = JSON.parse(text);
  } catch (e) {
    throw new RunFolderError(
      `${path} is not valid JSON (${(e as Error).message}); restore it, or start the run over ` +
        `with --out ${dir} --force`,
    );
  }
  if (
    typeof run !== "object" || run === null || typeof run.config !== "object" ||
    run.config === null || Array.isArray(run.config) || typeof run.teacher !== "string"
  ) {
    throw new RunFolderError(
      `${path} is not a run description (no config or teacher); restore it, or start the run ` +
        `over with --out ${dir} --force`,
    );
  }
  return run;
}

/** The lock file that marks a folder as being written by a running process. */
export const LOCK_FILE = "run.lock";

/** Whether process `pid` of this machine is alive (true when that cannot be told). */
function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return true; // no /proc: assume the owner lives
  }
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Takes the lock of the run folder `dir` (the file {@link LOCK_FILE} holding this process's id),
 * so that two processes never write one folder. A lock left by a process that no longer runs (a
 * `kill -9`, a power cut) is taken over.
 *
 * @returns a function that releases the lock (idempotent).
 * @throws {RunFolderError} when a live process holds the lock; the message names it.
 */
export async function lockRunFolder(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const hostname = (() => {
    try {
      return Deno.hostname();
    } catch {
      return "";
    }
  })();
  const mine = JSON.stringify({ pid: Deno.pid, hostname, started: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await Deno.writeTextFile(path, mine + "\n", { createNew: true });
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await Deno.remove(path).catch(() => {});
      };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw asWriteError(e, path);
    }
    let owner: { pid?: unknown; hostname?: unknown; started?: unknown } = {};
    try {
      owner = JSON.parse(await Deno.readTextFile(path));
    } catch { /* unreadable or half-written: treated as stale */ }
    const pid = typeof owner.pid === "number" ? owner.pid : NaN;
    const sameHost = owner.hostname === hostname;
    if (Number.isInteger(pid) && (!sameHost || processAlive(pid))) {
      throw new RunFolderError(
        `${dir} is being written by another run (process ${pid}${
          sameHost ? "" : ` on ${owner.hostname}`
        }, started ${owner.started}); wait for it to finish or stop it; if no run is writing ` +
          `there, delete ${path}`,
      );
    }
    await Deno.remove(path).catch(() => {}); // stale: its process is gone
  }
  throw new RunFolderError(`${path}: cannot take the lock of ${dir}; delete ${path} and retry`);
}

/** Reads the configuration of the run in `dir`. @throws {RunFolderError} if there is none. */
export async function readRunConfig(dir: string): Promise<DfkdConfig> {
  return (await readRunFile(dir)).config;
}

/** Writes `run.json` into `dir` (atomically). */
export async function writeRunFile(dir: string, run: RunFile): Promise<void> {
  await writeFileAtomic(join(dir, "run.json"), JSON.stringify(run, null, 2) + "\n");
}

/**
 * Removes what a run wrote into `dir` ({@link RUN_ENTRIES} and leftover temporary files) and
 * nothing else, so `--force` on a folder that also holds other files keeps them.
 */
export async function clearRunFolder(dir: string): Promise<void> {
  for (const e of RUN_ENTRIES) {
    await Deno.remove(join(dir, e), { recursive: true }).catch(() => {});
  }
  await removeTempFiles(dir);
}

/** Removes `*.<pid>.<n>.tmp` files left in `dir` by an interrupted atomic write. */
async function removeTempFiles(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /\.\d+\.\d+\.tmp$/.test(e.name)) {
        await Deno.remove(join(dir, e.name)).catch(() => {});
      }
    }
  } catch { /* folder missing: nothing to clean */ }
}

/** SHA-256 of a file as hex. */
export async function fileSha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs (or resumes) synthesis and distillation in `outDir` (created if missing; `run.json` is
 * written from `cfg` when absent, else left as it is). Returns `{stopped: true}` when
 * `ctx.shouldStop` turned true; finished batches and epochs are on disk.
 *
 * @throws {NumericalError} on a NaN/Inf loss (finished batches and epochs are kept; the message
 *   names the batch or epoch, the loss and what to lower).
 * @throws {DeviceLostError} when the GPU device is lost (finished work is kept).
 * @throws {RunFolderError} when a partial file does not fit the configuration.
 * @throws {CheckpointError} when the teacher's layer gives no feature-space model.
 */
export async function runDfkd(
  cfg: DfkdConfig,
  outDir: string,
  ctx: RunContext,
): Promise<RunOutcome> {
  const partial = join(outDir, "partial");
  await Deno.mkdir(partial, { recursive: true });
  await removeTempFiles(outDir);
  await removeTempFiles(partial);
  if (!(await hasRun(outDir))) {
    await writeRunFile(outDir, { config: cfg, teacher: ctx.teacherName, dataset: ctx.dataset });
  }
  const lostMessage = ctx.deviceLost ?? (() => {
    const l = deviceLost();
    return l ? (l.message || l.reason) : null;
  });
  const shouldStop = () => lostMessage() !== null || (ctx.shouldStop?.() ?? false);
  let phase = "synthesis";
  /** The outcome of a stop between steps: a device loss is an error, a signal is not. */
  const stopped = (): RunOutcome => {
    const lost = lostMessage();
    if (lost !== null) throw deviceLostError(lost, phase, outDir);
    return { stopped: true };
  };
  const say = (text: string) => ctx.onEvent?.({ phase: "message", text });
  const logPath = join(outDir, "losses.csv");
  const log = await Deno.open(logPath, { create: true, append: true });
  const enc = new TextEncoder();
  const logLine = (s: string) => {
    const bytes = enc.encode(s + "\n");
    try {
      for (let done = 0; done < bytes.length;) done += log.writeSync(bytes.subarray(done));
    } catch (e) {
      throw asWriteError(e, logPath);
    }
  };
  try {
    if ((await log.stat()).size === 0) logLine("phase,batch,epoch,step,loss");
  } catch (e) {
    log.close();
    throw e;
  }
  try {
    return await runSteps();
  } catch (e) {
    // A failing GPU call after a device loss is reported as the loss, not as its symptom.
    const lost = lostMessage();
    if (lost !== null && !(e instanceof DeviceLostError)) {
      throw deviceLostError(lost, phase, outDir);
    }
    throw e;
  } finally {
    log.close();
  }

  async function runSteps(): Promise<RunOutcome> {
    const { teacher } = ctx;
    teacher.setTrainable(false);
    const [c, h, w] = teacher.inputShape;
    const per = c * h * w;
    const classes = teacher.shapes(1).at(-1)!.shape[1];

    // 1–3: feature model, soft targets, synthesis, batch by batch.
    const fm = await teacherFeatureModel(teacher, cfg);
    const tsPath = join(outDir, "transfer-set.safetensors");
    const pngPath = join(outDir, "samples.png");
    const timePath = join(partial, "synthesis.json");
    let images: Float32Array;
    let targets: Float32Array;
    let synthSeconds = 0;
    const n = cfg.samples;
    if (await exists(tsPath)) {
      const ts = await loadSafetensors(tsPath);
      images = ts.tensors.images?.data;
      targets = ts.tensors.soft_targets?.data;
      if (images?.length !== n * per || targets?.length !== n * classes) {
        throw new RunFolderError(
          `${tsPath} does not hold ${n} images and soft targets; delete it and run with ` +
            `--resume ${outDir} again to synthesise it anew`,
        );
      }
      try {
        synthSeconds = Number(JSON.parse(await Deno.readTextFile(timePath)).seconds) || 0;
      } catch { /* time unknown */ }
      if (!(await exists(pngPath))) {
        await writeSamplesPng(pngPath, images, targets, n, classes, [c, h, w]);
      }
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
          if (
            part.tensors.images?.data.length !== bn * per ||
            part.tensors.soft_targets?.data.length !== bn * classes
          ) {
            throw new RunFolderError(
              `${file} does not hold the ${bn} images of batch ${b + 1}; delete it and resume`,
            );
          }
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
        if (shouldStop()) return stopped();
        const t0 = performance.now();
        const rng = root.fork(`synthesis-batch-${b}`);
        let res;
        try {
          res = await synthesizeTransferBatch(teacher, fm, cfg, bn, rng, (it, loss) => {
            logLine(`synthesis,${b},,${it},${loss}`);
            ctx.onEvent?.({
              phase: "synthesis",
              samplesDone: start + (bn * it) / Math.max(1, cfg.iterations),
              samples: n,
              loss,
              resumed: false,
            });
          }, shouldStop);
        } catch (e) {
          if (!(e instanceof NumericalError)) throw e;
          const terms = cfg.lambdaAct > 0
            ? `KL at τ ${cfg.tau} + ${cfg.lambdaAct}·L_a (${cfg.actNorm})`
            : `KL at τ ${cfg.tau} alone, λ_a = 0`;
          // A tiny τ overflows the KL term by itself: then a larger τ is the fix.
          const fix = cfg.tau < 1
            ? `--tau 20 (τ ${cfg.tau} is tiny) or a lower --synth-lr`
            : `e.g. --synth-lr ${cfg.synthLr / 10} or a lower --tau`;
          throw new NumericalError(
            `${e.message} (synthesis batch ${b + 1} of ${batches}; loss = ${terms}; ` +
              `--synth-lr ${cfg.synthLr}). ${b} finished batch(es) are saved in ${partial}; ` +
              `continue with --resume ${outDir}, adding ${fix}`,
          );
        }
        if (!res) return stopped();
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
      // The time first, the picture next, the transfer set last: its presence marks synthesis
      // as finished, and it holds no timing so that equal settings give equal bytes.
      await writeFileAtomic(timePath, JSON.stringify({ seconds: synthSeconds }) + "\n");
      await writeSamplesPng(pngPath, images, targets, n, classes, [c, h, w]);
      await saveSafetensors(tsPath, {
        images: { shape: [n, c, h, w], data: images },
        soft_targets: { shape: [n, classes], data: targets },
      }, {
        method: cfg.method,
        layer: fm?.layer ?? "none",
        sigma: String(cfg.sigma),
        tau: String(cfg.tau),
        seed: String(cfg.seed),
      });
      for (let b = 0; b < Math.ceil(n / cfg.batchSize); b++) {
        await Deno.remove(join(partial, `synth-${String(b).padStart(5, "0")}.safetensors`)).catch(
          () => {},
        );
      }
    }

    // The check of the transfer set: one teacher pass, before the distillation budget is spent.
    const stats = transferSetStats(await predict(teacher, images, n), targets, images, classes);
    const names = (CLASS_NAMES as Record<string, readonly string[]>)[ctx.dataset];
    const warning = transferSetWarning(stats, cfg, names);
    if (warning) say(warning);

    // 4: distillation, epoch by epoch.
    phase = "distillation";
    const student = buildModel(cfg.student, cfg.seed + 1);
    const studentPartial = join(partial, "student.safetensors");
    let resume: DistillState | undefined;
    let distillSeconds = 0;
    if (await exists(studentPartial)) {
      const st = await loadSafetensors(studentPartial);
      const params = student.parameters();
      for (const p of params) {
        for (const key of [p.name, `adam.m.${p.name}`, `adam.v.${p.name}`]) {
          if (st.tensors[key]?.data.length !== p.value.size) {
            student.dispose();
            throw new RunFolderError(
              `${studentPartial} does not fit a ${cfg.student} student (tensor ${key}); delete ` +
                `it and resume to restart distillation`,
            );
          }
        }
        p.value.write(st.tensors[p.name].data);
      }
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
    let epochsDone = resume?.epoch ?? 0;
    let out;
    try {
      out = await distill(teacher, student, images, n, {
        epochs: cfg.studentEpochs,
        batchSize: cfg.studentBatchSize,
        lr: cfg.studentLr,
        tau: cfg.kdTau,
        shift: cfg.kdShift,
        flip: cfg.kdFlip,
        mixup: cfg.kdMixup,
        adversarial: {
          steps: cfg.kdAdvSteps,
          stepSize: cfg.kdAdvStepSize,
          fraction: cfg.kdAdvFraction,
        },
        seed: cfg.seed,
        logEvery: cfg.logEvery,
      }, {
        shouldStop,
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
          epochsDone = epoch + 1;
        },
      }, resume);
    } catch (e) {
      student.dispose();
      if (!(e instanceof NumericalError)) throw e;
      throw new NumericalError(
        `${e.message} (KD loss at τ ${cfg.kdTau}; --student-lr ${cfg.studentLr}). The transfer ` +
          `set and ${epochsDone} finished epoch(s) are saved in ${outDir}; continue with ` +
          `--resume ${outDir}, adding e.g. --student-lr ${cfg.studentLr / 10}`,
      );
    }
    if (out.stopped) {
      student.dispose();
      return stopped();
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
      transfer_set_stats: stats,
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
  }
}

function deviceLostError(message: string, phase: string, outDir: string): DeviceLostError {
  return new DeviceLostError(
    `the GPU device was lost during ${phase} (${message}); finished batches and epochs are ` +
      `saved in ${outDir}; continue with --resume ${outDir} once the GPU works again`,
  );
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
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
    const best = targetClass(targets, i, classes);
    if (filled[best] >= cols) continue;
    const slot = best * cols + filled[best]++;
    grid.set(images.subarray(i * c * h * w, i * c * h * w + h * w), slot * h * w);
  }
  await writeFileAtomic(
    path,
    imageGridPng(grid, classes * cols, h, w, classes, cols, { pad: 2, scale: 2 }),
  );
}
