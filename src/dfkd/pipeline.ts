/**
 * The two stages of data-free distillation, written once and shared by the library API
 * (`src/api.ts`) and the resumable run (`run.ts`): synthesis of the transfer set, batch by batch
 * (Wang, AAAI 2021, §3, steps 1–3), and distillation of a new student on it, epoch by epoch
 * (step 4). Hooks report progress, hand over each finished batch and epoch (so that a caller can
 * keep them), supply batches and an optimiser state kept earlier (so that a caller can resume),
 * and stop between steps.
 *
 * Seeding: image `i` of the transfer set draws from `new Rng(seed).fork("synthesis-image-i")`,
 * whatever batch or shard it is made in (synthesis is batch invariant: `synthesis.ts`); the
 * student is built as `buildModel(student, seed + 1)`; epoch `e` of distillation draws from
 * `new Rng(seed).fork("distill-epoch-e")`. Equal settings give equal bytes on one adapter,
 * whichever caller runs the stages, at whatever synthesis batch size, in however many shards,
 * and however often it was interrupted.
 *
 * @module
 */

import { NumericalError } from "../errors.ts";
import type { Sequential } from "../nn/layers.ts";
import type { Rng } from "../random.ts";
import { buildModel } from "../nn/models.ts";
import { gpuContext } from "../gpu/runtime.ts";
import { synthesisBatchSize } from "./batch_size.ts";
import { distill, type DistillProgress } from "./distill.ts";
import type { TrainingState } from "../nn/checkpoint.ts";
import { checkLowRes, type DfkdConfig } from "./settings.ts";

export type { DistillProgress };
import {
  type BalancePilot,
  imageGenerators,
  resolveBalance,
  synthesizeTransferBatch,
  teacherFeatureModel,
} from "./transfer_set.ts";

/** One batch of the transfer set. */
export interface TransferBatch {
  /** Images `[n, 1, 32, 32]` in [0, 1]. */
  images: Float32Array;
  /** Soft targets `[n, classes]`. */
  targets: Float32Array;
  /** Final synthesis loss of the batch, in nats. */
  loss: number;
}

/** Progress of {@link synthesisStage}: every logged iteration, and once per finished batch. */
export interface SynthesisStageProgress {
  /** Batch index, 0-based. */
  batch: number;
  /** `ceil(samples / batchSize)`. */
  batches: number;
  /** Adam iteration within the batch (the last one when `done`). */
  iteration: number;
  /** Samples finished, counting the current batch pro rata (may be fractional). */
  samplesDone: number;
  /** Images this stage makes: the transfer-set size N, or the slice's size. */
  samples: number;
  /** Loss of the batch at this iteration, in nats. */
  loss: number;
  /** True on the one report made when a batch is finished. */
  done: boolean;
  /** True when the finished batch was supplied by {@link SynthesisHooks.stored}. */
  resumed: boolean;
  /** On the `done` report only: the finished batch's images `[bn, 1, 32, 32]` (a view). */
  images?: Float32Array;
  /** On the `done` report only: the finished batch's soft targets `[bn, classes]` (a view). */
  targets?: Float32Array;
}

/** Hooks of {@link synthesisStage}. */
export interface SynthesisHooks {
  /** A batch kept from an earlier run (resumed), or null to synthesise it. */
  stored?: (batch: number, size: number) => Promise<(TransferBatch & { seconds: number }) | null>;
  /** Called with each batch synthesised here, before the next starts (to keep it). */
  onBatch?: (batch: number, result: TransferBatch, seconds: number) => Promise<void>;
  /** Every logged iteration, and once per finished batch. */
  onProgress?: (p: SynthesisStageProgress) => void;
  /** Checked between iterations; true stops the stage (finished batches were handed over). */
  shouldStop?: () => boolean;
}

/** Which images {@link synthesisStage} makes, and in what batches. */
export interface SynthesisSlice {
  /** Index of the first image in the transfer set (default 0). */
  first?: number;
  /** Images to make from `first` (default: the rest of `synthesis.samples`). */
  count?: number;
  /**
   * Images per batch (default: `synthesis.batchSize`, `"auto"` resolved for this adapter by
   * {@link synthesisBatchSize}). Changes the speed only: the images are the same at any size.
   */
  batchSize?: number;
}

/** What {@link synthesisStage} returns: the transfer set (or slice), or `null` when stopped. */
export interface SynthesisStageResult {
  /** Images `[count, 1, 32, 32]` in [0, 1]: images `first … first + count − 1`. */
  images: Float32Array;
  /** Soft targets `[count, classes]`. */
  targets: Float32Array;
  /** Seconds of synthesis, stored batches' included. */
  seconds: number;
  /** Name of the modelled layer, or `"none"` for the noise method. */
  layer: string;
  /** Whether the soft targets are class-balanced (`synthesis.balance` resolved). */
  balance: boolean;
  /** The pilot that decided `synthesis.balance` `"auto"`, or null when it was given. */
  pilot: BalancePilot | null;
}

/**
 * Synthesises the transfer set of `cfg` from `teacher` (frozen here), or the slice of it that
 * `slice` names, batch by batch. Image `i` is the same in any batch and any slice.
 *
 * @returns the images and soft targets, or `null` when `hooks.shouldStop` turned true.
 * @throws {NumericalError} when a batch's loss becomes NaN or infinite; the message names the
 *   batch, the loss's terms and the setting to lower.
 * @throws {RangeError} / {@link CheckpointError} when the layer gives no feature-space model.
 * @throws {RangeError} when `slice` reaches outside `synthesis.samples`.
 * @throws {SettingError} when `synthesis.lowRes` does not divide the teacher's input.
 */
export async function synthesisStage(
  teacher: Sequential,
  cfg: DfkdConfig,
  hooks: SynthesisHooks = {},
  slice: SynthesisSlice = {},
): Promise<SynthesisStageResult | null> {
  teacher.setTrainable(false);
  const s = cfg.synthesis;
  const first = slice.first ?? 0;
  const n = slice.count ?? s.samples - first;
  if (!(first >= 0 && n >= 0 && first + n <= s.samples)) {
    throw new RangeError(`images ${first}…${first + n - 1} are not all in 0…${s.samples - 1}`);
  }
  checkLowRes(s.lowRes, teacher.inputShape);
  const bs = slice.batchSize ?? synthesisBatchSize(s.batchSize, teacher, n, gpuContext());
  const per = teacher.inputShape.reduce((a, b) => a * b, 1);
  const classes = teacher.shapes(1).at(-1)!.shape[1];
  const fm = await teacherFeatureModel(teacher, s);
  const { balance, pilot } = await resolveBalance(teacher, fm, s, cfg.seed);
  const resolved = { ...cfg, synthesis: { ...s, balance } };
  const images = new Float32Array(n * per);
  const targets = new Float32Array(n * classes);
  const batches = Math.ceil(n / bs);
  let seconds = 0;
  for (let b = 0; b < batches; b++) {
    const start = b * bs;
    const bn = Math.min(bs, n - start);
    const report = (iteration: number, done: number, loss: number, fin: boolean, res = false) =>
      hooks.onProgress?.({
        batch: b,
        batches,
        iteration,
        samplesDone: start + done,
        samples: n,
        loss,
        done: fin,
        resumed: res,
        ...(fin
          ? {
            images: images.subarray(start * per, (start + bn) * per),
            targets: targets.subarray(start * classes, (start + bn) * classes),
          }
          : {}),
      });
    const kept = await hooks.stored?.(b, bn) ?? null;
    let res: TransferBatch | null = kept;
    if (!kept) {
      if (hooks.shouldStop?.()) return null;
      const t0 = performance.now();
      const rngs = imageGenerators(cfg.seed, first + start, bn);
      res = await synthesizeBatchOf(teacher, fm, resolved, b, batches, rngs, report, hooks);
      if (!res) return null;
      const took = (performance.now() - t0) / 1000;
      seconds += took;
      await hooks.onBatch?.(b, res, took);
    } else seconds += kept.seconds;
    images.set(res!.images, start * per);
    targets.set(res!.targets, start * classes);
    report(s.iterations, bn, res!.loss, true, kept !== null);
  }
  return { images, targets, seconds, layer: fm?.layer ?? "none", balance, pilot };
}

/** Batch `b` of the transfer set, with its NaN message naming the batch and the fix. */
async function synthesizeBatchOf(
  teacher: Sequential,
  fm: Awaited<ReturnType<typeof teacherFeatureModel>>,
  cfg: DfkdConfig & { synthesis: { balance: boolean } },
  b: number,
  batches: number,
  rngs: Rng[],
  report: (iteration: number, done: number, loss: number, fin: boolean) => void,
  hooks: SynthesisHooks,
): Promise<TransferBatch | null> {
  const s = cfg.synthesis;
  const bn = rngs.length;
  try {
    return await synthesizeTransferBatch(
      teacher,
      fm,
      s,
      cfg.logEvery,
      rngs,
      (it, loss) => report(it, (bn * it) / Math.max(1, s.iterations), loss, false),
      hooks.shouldStop,
    );
  } catch (e) {
    if (!(e instanceof NumericalError)) throw e;
    const terms = s.lambdaAct > 0
      ? `KL at τ ${s.tau} + ${s.lambdaAct}·L_a (${s.actNorm})`
      : `KL at τ ${s.tau} alone, λ_a = 0`;
    // A tiny τ overflows the KL term by itself: then a larger τ is the fix.
    const fix = s.tau < 1
      ? `synthesis.tau 20 (τ ${s.tau} is tiny) or a lower synthesis.lr`
      : `e.g. synthesis.lr ${s.lr / 10} or a lower synthesis.tau`;
    throw new NumericalError(
      `${e.message} (synthesis batch ${b + 1} of ${batches}, after ${b} finished batch(es); ` +
        `loss = ${terms}; synthesis.lr ${s.lr}); try ${fix}`,
    );
  }
}

/** Hooks of {@link distillationStage}. */
export interface DistillationHooks {
  /** Student weights and optimiser state after a finished epoch (resumed), or none. */
  resume?: { weights: Float32Array[]; state: TrainingState };
  /** Called after each finished epoch with the student and the state to resume after it. */
  onEpochEnd?: (student: Sequential, epoch: number, state: TrainingState) => Promise<void>;
  /** Every `logEvery` steps and at the end of each epoch. */
  onProgress?: (p: DistillProgress) => void;
  /** Checked between steps; true stops the stage after the step in progress. */
  shouldStop?: () => boolean;
}

/** What {@link distillationStage} returns. */
export interface DistillationStageResult {
  /** The student (frozen), or null when stopped. Free it with `dispose()`. */
  student: Sequential | null;
  /** Seconds of distillation in this call. */
  seconds: number;
  /** Images trained on in this call. */
  imagesSeen: number;
  /** KD loss of the last logged batch, in nats. */
  finalLoss: number;
}

/**
 * Distils a new student (`buildModel(student, seed + 1)`) from `teacher` on the transfer-set
 * images `[count, 1, 32, 32]`, epoch by epoch, with the KD loss of Hinton et al. (2015).
 *
 * @throws {NumericalError} when the KD loss becomes NaN or infinite; the message names the
 *   settings to lower.
 */
export async function distillationStage(
  teacher: Sequential,
  images: Float32Array,
  count: number,
  cfg: DfkdConfig,
  hooks: DistillationHooks = {},
): Promise<DistillationStageResult> {
  const d = cfg.distillation;
  const classes = teacher.shapes(1).at(-1)!.shape[1];
  const student = buildModel(d.student, cfg.seed + 1, classes);
  const params = student.parameters();
  hooks.resume?.weights.forEach((w, i) => params[i].value.write(w));
  const t0 = performance.now();
  try {
    const out = await distill(
      teacher,
      student,
      images,
      count,
      { ...d, seed: cfg.seed, logEvery: cfg.logEvery },
      {
        shouldStop: hooks.shouldStop,
        onProgress: hooks.onProgress,
        onEpochEnd: hooks.onEpochEnd &&
          (async (epoch, state) => await hooks.onEpochEnd!(student, epoch, await state())),
      },
      hooks.resume?.state,
    );
    const seconds = (performance.now() - t0) / 1000;
    if (out.stopped) student.dispose();
    return {
      student: out.stopped ? null : student,
      seconds,
      imagesSeen: out.imagesSeen,
      finalLoss: out.finalLoss,
    };
  } catch (e) {
    student.dispose();
    if (!(e instanceof NumericalError)) throw e;
    throw new NumericalError(
      `${e.message} (KD loss at τ ${d.tau}; distillation.lr ${d.lr}); try e.g. ` +
        `distillation.lr ${d.lr / 10}`,
    );
  }
}
