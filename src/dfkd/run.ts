/**
 * A whole data-free distillation run in an output folder, resumable at every arrow of the data
 * flow: teacher → feature model → soft targets → synthesis (per batch) → transfer set → its
 * check → distillation (per epoch) → student + report. It composes the stages of `pipeline.ts`
 * (the ones the library API runs) with the folder store of `run_folder.ts`.
 *
 * The run stops between steps when {@link RunContext.shouldStop} turns true (a signal) or the GPU
 * device is lost, keeping every finished batch and epoch.
 *
 * @module
 */

import { CLASS_NAMES } from "../data/datasets.ts";
import { DeviceLostError, DiskFullError, NumericalError } from "../errors.ts";
import { deviceLost } from "../gpu/device.ts";
import { saveModel } from "../nn/checkpoint.ts";
import type { Sequential } from "../nn/layers.ts";
import { buildModel } from "../nn/models.ts";
import { evaluate, type LabelledImages, predict } from "../nn/train.ts";
import {
  judgeAgreement,
  type SoftTargetReport,
  softTargetReport,
  type TransferSetStats,
  transferSetStats,
  transferSetWarning,
} from "./diagnostics.ts";

export type { SoftTargetReport, TransferSetStats };
import { distillationStage, synthesisStage } from "./pipeline.ts";
import { resolveBalance, teacherFeatureModel } from "./transfer_set.ts";
import { hasRun, RunFolder, type Shapes, type ShardFile, writeRunFile } from "./run_folder.ts";
import type { DfkdConfig } from "./settings.ts";

export { DeviceLostError, RunFolderError } from "../errors.ts";
export {
  clearRunFolder,
  fileSha256,
  hasRun,
  isFinishedRun,
  isFinishedShard,
  LOCK_FILE,
  lockRunFolder,
  readRunFile,
  RUN_ENTRIES,
  type RunFile,
  type ShardFile,
  writeRunFile,
} from "./run_folder.ts";

/** The report of a finished run (also written to `metrics.json`). */
export interface RunMetrics {
  /** Top-1 accuracy of the teacher on the test set, a fraction; null without a test set. */
  teacher_test_accuracy: number | null;
  /** Top-1 accuracy of the student on the test set, a fraction; null without a test set. */
  student_test_accuracy: number | null;
  /** Images in the transfer set. */
  transfer_set_size: number;
  /** Adam iterations per synthesis batch (0 for the noise method). */
  synthesis_iterations: number;
  /** What the teacher makes of the transfer set (a check that it carries class information). */
  transfer_set_stats: TransferSetStats;
  /** How the soft targets were drawn, and how evenly they came out. */
  soft_targets: SoftTargetReport;
  /** Seconds of synthesis, over every resumed part of the run. */
  synthesis_seconds: number;
  /** Seconds of distillation, likewise. */
  distillation_seconds: number;
  /** Sample-iterations per second of synthesis. */
  synthesis_throughput: number;
  /** Images per second of distillation. */
  distillation_throughput: number;
  /** The synthesis method. */
  method: string;
  /** The modelled teacher layer, or `"none"`. */
  layer: string;
  /** Path or name of the teacher. */
  teacher: string;
  /** The teacher's dataset. */
  dataset: string;
  /** The WebGPU adapter the run ran on. */
  adapter: string;
  /** Parameters of the student. */
  student_parameters: number;
  /** Folder of the test set, or null. */
  test_set: string | null;
  /** Every setting of the run. */
  settings: DfkdConfig;
}

/** Progress events of a run. */
export type RunEvent =
  | { phase: "synthesis"; samplesDone: number; samples: number; loss: number; resumed: boolean }
  | {
    phase: "distillation";
    step: number;
    steps: number;
    /** NaN on the event that reports the steps reloaded by a resume. */
    loss: number;
    resumed: boolean;
  }
  | { phase: "message"; text: string };

/** What a run needs besides its configuration. */
export interface RunContext {
  /** The teacher, frozen during the run. */
  teacher: Sequential;
  /** Path or name of the teacher, for the report. */
  teacherName: string;
  /** The teacher's dataset (for class names and the report). */
  dataset: string;
  /**
   * An independent model of the teacher's dataset (same input shape and classes) that judges the
   * transfer set: the share of soft-target classes it agrees with is reported. Optional.
   */
  judge?: Sequential;
  /** The real test set, or null when none was found (accuracy is then not measured). */
  testSet: LabelledImages | null;
  /** Folder of the test set, for the report. */
  testSetDir: string | null;
  /** Adapter description, for the report. */
  adapter: string;
  /** Progress and messages. */
  onEvent?: (e: RunEvent) => void;
  /** Checked between steps; true stops the run after saving finished work. */
  shouldStop?: () => boolean;
  /**
   * Checked between steps: a message when the GPU device is lost, else null. Defaults to
   * {@link deviceLost}; tests pass their own to simulate a loss.
   */
  deviceLost?: () => string | null;
  /**
   * Images per synthesis batch: `synthesis.batchSize` as the run resolved it (recorded in
   * run.json, so that a resume finds its batches). Default: resolved for this adapter.
   */
  synthesisBatchSize?: number;
}

/** Result of {@link runDfkd}: metrics when finished, or `stopped` after an interruption. */
export type RunOutcome = { stopped: false; metrics: RunMetrics } | { stopped: true };

/** Result of {@link runShard}: the finished shard, or `stopped` after an interruption. */
export type ShardOutcome =
  | { stopped: false; shard: ShardFile; seconds: number }
  | { stopped: true };

/** The synthesised (or reloaded) transfer set of a run. */
interface Transfer {
  images: Float32Array;
  targets: Float32Array;
  seconds: number;
}

/**
 * Runs (or resumes) synthesis and distillation in `outDir` (created if missing; `run.json` is
 * written from `cfg` when absent, else left as it is). Returns `{stopped: true}` when
 * `ctx.shouldStop` turned true; finished batches and epochs are on disk.
 *
 * Errors that leave finished work behind carry `resumeDir: outDir`.
 *
 * @throws {NumericalError} on a NaN/Inf loss (the message names the batch or epoch, the loss and
 *   the setting to lower).
 * @throws {DeviceLostError} when the GPU device is lost.
 * @throws {DiskFullError} when the disk is full.
 * @throws {RunFolderError} when a partial file does not fit the configuration.
 * @throws {CheckpointError} when the teacher's layer gives no feature-space model.
 */
export function runDfkd(
  cfg: DfkdConfig,
  outDir: string,
  ctx: RunContext,
): Promise<RunOutcome> {
  return inRunFolder(cfg, outDir, ctx, async (folder, shouldStop, enter) => {
    const transfer = await synthesize(cfg, folder, ctx, shouldStop);
    if (!transfer) return null;
    const stats = await checkTransferSet(cfg, transfer, ctx);
    enter("distillation");
    const student = await distillResumable(cfg, folder, ctx, transfer.images, shouldStop);
    if (!student) return null;
    const metrics = await finish(cfg, folder, ctx, transfer, stats, student);
    return { stopped: false, metrics };
  });
}

/**
 * Runs (or resumes) one shard in `outDir`: synthesises only the slice `shard` of the transfer set
 * of `cfg`, batch by batch, keeps it as the folder's `transfer-set.safetensors` (metadata
 * `shard`, `first_image`) and writes `shard.json`; no distillation. The slice's images are those
 * an unsharded run makes at the same indices.
 *
 * @throws the errors of {@link runDfkd}'s synthesis.
 */
export function runShard(
  cfg: DfkdConfig,
  outDir: string,
  ctx: RunContext,
  shard: ShardFile,
): Promise<ShardOutcome> {
  return inRunFolder(cfg, outDir, ctx, async (folder, shouldStop) => {
    const transfer = await synthesize(cfg, folder, ctx, shouldStop, shard);
    if (!transfer) return null;
    await folder.finishShard({ ...shard, seconds: round(transfer.seconds) });
    return { stopped: false, shard, seconds: transfer.seconds };
  });
}

/**
 * Opens the run folder `outDir` (writing run.json from `cfg` when absent) and runs `body` in it,
 * which returns null when stopped. A stop caused by a device loss, or a failing GPU call after
 * one, becomes a {@link DeviceLostError} naming the phase (`enter` sets it); errors after which
 * finished work can be resumed carry `resumeDir`.
 */
async function inRunFolder<T>(
  cfg: DfkdConfig,
  outDir: string,
  ctx: RunContext,
  body: (
    folder: RunFolder,
    shouldStop: () => boolean,
    enter: (phase: string) => void,
  ) => Promise<T | null>,
): Promise<T | { stopped: true }> {
  const folder = await RunFolder.open(outDir).catch((e) => {
    throw keptIn(e, outDir);
  });
  if (!(await hasRun(outDir))) {
    await writeRunFile(outDir, { config: cfg, teacher: ctx.teacherName, dataset: ctx.dataset });
  }
  const lostMessage = ctx.deviceLost ?? (() => {
    const l = deviceLost();
    return l ? (l.message || l.reason) : null;
  });
  const shouldStop = () => lostMessage() !== null || (ctx.shouldStop?.() ?? false);
  let phase = "synthesis";
  try {
    const out = await body(folder, shouldStop, (p) => phase = p);
    if (out !== null) return out;
    const lost = lostMessage();
    if (lost !== null) throw deviceLostError(lost, phase, outDir);
    return { stopped: true };
  } catch (e) {
    // A failing GPU call after a device loss is reported as the loss, not as its symptom.
    const lost = lostMessage();
    if (lost !== null && !(e instanceof DeviceLostError)) {
      throw deviceLostError(lost, phase, outDir);
    }
    throw keptIn(e, outDir);
  } finally {
    folder.close();
  }
}

/**
 * Keeps a transfer set made elsewhere (the assembled slices of shards) in the run folder `outDir`
 * as a finished synthesis does (`transfer-set.safetensors`, `samples.png`, the synthesis time), so
 * that {@link runDfkd} there goes straight to its check and distillation.
 *
 * @throws {DiskFullError} when the disk is full.
 */
export async function storeTransferSet(
  outDir: string,
  teacher: Sequential,
  cfg: DfkdConfig,
  set: { images: Float32Array; targets: Float32Array; seconds: number; layer: string },
): Promise<void> {
  const folder = await RunFolder.open(outDir);
  try {
    await folder.saveTransferSet(set, cfg, shapesOf(teacher));
  } finally {
    folder.close();
  }
}

/** `e` with `resumeDir` set, for the errors after which the finished work can be resumed. */
function keptIn(e: unknown, outDir: string): unknown {
  if (e instanceof DiskFullError && !e.resumeDir) return new DiskFullError(e.path, outDir);
  if (e instanceof NumericalError && !e.resumeDir) {
    return new NumericalError(`${e.message}; finished work is kept in ${outDir}`, outDir);
  }
  return e;
}

function shapesOf(teacher: Sequential): Shapes {
  return { image: teacher.inputShape, classes: teacher.shapes(1).at(-1)!.shape[1] };
}

/**
 * Synthesis, batch by batch, each kept in `partial/`; or the finished transfer set reloaded. With
 * `shard`, only its slice.
 */
async function synthesize(
  cfg: DfkdConfig,
  folder: RunFolder,
  ctx: RunContext,
  shouldStop: () => boolean,
  shard?: ShardFile,
): Promise<Transfer | null> {
  const shapes = shapesOf(ctx.teacher);
  const kept = await folder.transferSet(shard?.images ?? cfg.synthesis.samples, shapes);
  if (kept) {
    ctx.onEvent?.({ phase: "message", text: `transfer set loaded from ${kept.path}` });
    return kept;
  }
  const slice = { first: shard?.first, count: shard?.images, batchSize: ctx.synthesisBatchSize };
  const set = await synthesisStage(ctx.teacher, cfg, {
    stored: (b, n) => folder.storedBatch(b, n, shapes),
    onBatch: (b, res, seconds) => folder.saveBatch(b, res, seconds, shapes),
    shouldStop,
    onProgress: (p) => {
      if (!p.done) folder.logLine(`synthesis,${p.batch},,${p.iteration},${p.loss}`);
      ctx.onEvent?.({
        phase: "synthesis",
        samplesDone: p.samplesDone,
        samples: p.samples,
        loss: p.loss,
        resumed: p.resumed,
      });
    },
  }, slice);
  if (!set) return null;
  const extra: Record<string, string> = shard
    ? { shard: `${shard.index}/${shard.count}`, first_image: String(shard.first) }
    : {};
  await folder.saveTransferSet(set, cfg, shapes, extra);
  return set;
}

/**
 * How the run's soft targets were drawn (the pilot is a pure function of teacher and seed, so it
 * is worked out again here) and the share of their largest class.
 */
async function softTargetChoice(
  teacher: Sequential,
  cfg: DfkdConfig,
  targets: Float32Array,
): Promise<SoftTargetReport> {
  const s = cfg.synthesis;
  const fm = await teacherFeatureModel(teacher, s);
  const { balance, pilot } = await resolveBalance(teacher, fm, s, cfg.seed);
  const { classes } = shapesOf(teacher);
  return softTargetReport(s.method, s.balance, balance, pilot, targets, classes);
}

/** The check of the transfer set: one teacher pass, before the distillation budget is spent. */
async function checkTransferSet(
  cfg: DfkdConfig,
  transfer: Transfer,
  ctx: RunContext,
): Promise<TransferSetStats> {
  const n = cfg.synthesis.samples;
  const { classes } = shapesOf(ctx.teacher);
  const predicted = await predict(ctx.teacher, transfer.images, n);
  const stats = transferSetStats(predicted, transfer.targets, transfer.images, classes);
  if (ctx.judge) {
    const judged = await predict(ctx.judge, transfer.images, n);
    stats.judge_agreement = judgeAgreement(judged, transfer.targets, classes);
  }
  const names = (CLASS_NAMES as Record<string, readonly string[]>)[ctx.dataset];
  const warning = transferSetWarning(stats, cfg.synthesis, names);
  if (warning) ctx.onEvent?.({ phase: "message", text: warning });
  return stats;
}

/** Distillation, epoch by epoch, the student's state kept in `partial/` after each. */
async function distillResumable(
  cfg: DfkdConfig,
  folder: RunFolder,
  ctx: RunContext,
  images: Float32Array,
  shouldStop: () => boolean,
): Promise<{ student: Sequential; seconds: number; imagesSeen: number } | null> {
  const probe = buildModel(cfg.distillation.student, 0);
  const kept = await folder.studentState(probe).finally(() => probe.dispose());
  if (kept) {
    ctx.onEvent?.({
      phase: "message",
      text: `distillation resumed after epoch ${kept.state.epoch}`,
    });
    const n = cfg.synthesis.samples;
    const perEpoch = Math.max(1, Math.floor(n / Math.min(cfg.distillation.batchSize, n)));
    ctx.onEvent?.({
      phase: "distillation",
      step: kept.state.epoch * perEpoch,
      steps: cfg.distillation.epochs * perEpoch,
      loss: NaN,
      resumed: true,
    });
  }
  let seconds = kept?.seconds ?? 0;
  let epochStart = performance.now();
  const out = await distillationStage(ctx.teacher, images, cfg.synthesis.samples, cfg, {
    resume: kept ?? undefined,
    shouldStop,
    onProgress: (p) => {
      folder.logLine(`distillation,,${p.epoch},${p.step},${p.loss}`);
      ctx.onEvent?.({
        phase: "distillation",
        step: p.step,
        steps: p.steps,
        loss: p.loss,
        resumed: false,
      });
    },
    onEpochEnd: async (student, _epoch, state) => {
      seconds += (performance.now() - epochStart) / 1000;
      await folder.saveStudentState(student, state, seconds);
      epochStart = performance.now();
    },
  });
  return out.student ? { student: out.student, seconds, imagesSeen: out.imagesSeen } : null;
}

/** Saves the student, evaluates both networks on the test set, writes `metrics.json`. */
async function finish(
  cfg: DfkdConfig,
  folder: RunFolder,
  ctx: RunContext,
  transfer: Transfer,
  stats: TransferSetStats,
  dist: { student: Sequential; seconds: number },
): Promise<RunMetrics> {
  const { synthesis: s, distillation: d } = cfg;
  const student = dist.student;
  try {
    await saveModel(`${folder.dir}/student.safetensors`, student, {
      dataset: ctx.dataset,
      teacher: ctx.teacherName,
      method: s.method,
      kd_tau: d.tau,
      epochs: d.epochs,
      seed: cfg.seed,
    });
    const test = ctx.testSet;
    const n = s.samples;
    const stepsPerEpoch = Math.max(1, Math.floor(n / Math.min(d.batchSize, n)));
    const metrics: RunMetrics = {
      teacher_test_accuracy: test ? await evaluate(ctx.teacher, test) : null,
      student_test_accuracy: test ? await evaluate(student, test) : null,
      transfer_set_size: n,
      synthesis_iterations: s.method === "noise" ? 0 : s.iterations,
      transfer_set_stats: stats,
      soft_targets: await softTargetChoice(ctx.teacher, cfg, transfer.targets),
      synthesis_seconds: round(transfer.seconds),
      distillation_seconds: round(dist.seconds),
      synthesis_throughput: round(transfer.seconds > 0 ? (n * s.iterations) / transfer.seconds : 0),
      distillation_throughput: round(
        dist.seconds > 0 ? (d.epochs * stepsPerEpoch * Math.min(d.batchSize, n)) / dist.seconds : 0,
      ),
      method: s.method,
      layer: s.method === "softmax-space"
        ? ctx.teacher.layers.at(-1)!.name
        : s.method === "noise"
        ? "none"
        : s.layer,
      teacher: ctx.teacherName,
      dataset: ctx.dataset,
      adapter: ctx.adapter,
      student_parameters: student.parameterCount(),
      test_set: ctx.testSetDir,
      settings: cfg,
    };
    await folder.finish(metrics);
    return metrics;
  } finally {
    student.dispose();
  }
}

function deviceLostError(message: string, phase: string, outDir: string): DeviceLostError {
  return new DeviceLostError(
    `the GPU device was lost during ${phase} (${message}); finished batches and epochs are ` +
      `kept in ${outDir}; resume the run once the GPU works again`,
    outDir,
  );
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
