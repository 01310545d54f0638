/**
 * The high-level API: train a teacher, synthesise a transfer set from it alone, distil a student
 * on that set, and measure accuracy. Each function takes one options object whose every field has
 * a documented default, and returns plain values (host arrays and models), so the steps compose
 * and each result can be saved and inspected.
 *
 * The method is Z. Wang, "Data-Free Knowledge Distillation with Soft Targeted Transfer Set
 * Synthesis", AAAI 2021 (arXiv:2104.04868); the distillation loss is Hinton, Vinyals and Dean,
 * "Distilling the Knowledge in a Neural Network", 2015.
 *
 * Every function initialises the GPU runtime on first use ({@link initGpu}), so none needs
 * `await initGpu()` beforehand; each throws {@link NoAdapterError} when no WebGPU adapter exists.
 *
 * @module
 */

import { distillationStage, synthesisStage, type SynthesisStageProgress } from "./dfkd/pipeline.ts";
import type { DistillProgress } from "./dfkd/distill.ts";
import type { BalancePilot } from "./dfkd/transfer_set.ts";

export type { DistillProgress };
import {
  type AdversarialSettings,
  type DistillationSettings,
  resolveConfig,
  type SynthesisSettings,
} from "./dfkd/settings.ts";
import { initGpu } from "./gpu/runtime.ts";
import type { Sequential } from "./nn/layers.ts";
import { type Architecture, ARCHITECTURES, buildModel } from "./nn/models.ts";
import {
  evaluate as evaluateModel,
  type LabelledImages,
  LR_SCHEDULES,
  type LrSchedule,
  TEACHER_DEFAULTS,
  trainClassifier,
  type TrainProgress,
} from "./nn/train.ts";

/** Options of {@link trainTeacher}; every field is optional. */
export interface TrainTeacherOptions {
  /** Architecture to build. Default `"lenet5"` (61,706 parameters). */
  arch?: Architecture;
  /** Passes over the training images, an integer ≥ 1. Default 15. */
  epochs?: number;
  /** Images per Adam step, an integer ≥ 1 (clamped to the image count). Default 256. */
  batchSize?: number;
  /** Adam learning rate (> 0): the cosine schedule's peak, or the constant rate. Default 0.001. */
  lr?: number;
  /** `cosine` (decay to 1% of `lr`) or `constant`. Default `constant`. */
  schedule?: LrSchedule;
  /** Seed of the initial weights, the shuffling and the augmentation (a safe integer). Default 0. */
  seed?: number;
  /** L2 weight decay (≥ 0) added to the gradient. Default 0. */
  weightDecay?: number;
  /** Random ±2-pixel shifts of each training batch. Default false. */
  augment?: boolean;
  /**
   * Standard deviation (pixel units, ≥ 0) of Gaussian noise added to each training pixel; 0 turns
   * it off. Default 0.2; Fashion-MNIST teachers trained at 0.35 distil better (the default of
   * `deno task train-teacher --dataset fashion-mnist`).
   */
  inputNoise?: number;
  /** Called every 20 steps and after the last, with the mean cross-entropy of the read batch. */
  onProgress?: (p: TrainProgress) => void;
}

/** What {@link trainTeacher} returns. */
export interface TrainTeacherResult {
  /** The trained classifier (frozen: `requiresGrad` off). Free it with `model.dispose()`. */
  model: Sequential;
  /** Wall-clock seconds of training. */
  seconds: number;
  /** Training throughput in images per second. */
  imagesPerSecond: number;
  /** Mean cross-entropy (nats) of the last logged batch. */
  finalLoss: number;
}

/**
 * Trains a classifier with cross-entropy and Adam on labelled images (used to make teachers).
 *
 * @param data `images` `[count, 1, 32, 32]` f32 in [0, 1], `labels` `[count]` in 0..9 (for
 *   example a split from {@link loadSplit}).
 * @returns the trained model and its training speed.
 * @throws {RangeError} when `data` is empty or its arrays do not match `count`, or an option is
 *   out of range (non-integer epochs, lr ≤ 0, unknown architecture).
 * @throws {Error} when the loss becomes NaN or infinite (lower `lr`).
 * @throws {NoAdapterError} when no WebGPU adapter is available.
 *
 * @example
 * ```ts ignore
 * const train = await loadSplit(findDataDir("fashion-mnist")!, "train");
 * const { model } = await trainTeacher(train, { epochs: 20 });
 * ```
 */
export async function trainTeacher(
  data: LabelledImages,
  opts: TrainTeacherOptions = {},
): Promise<TrainTeacherResult> {
  await initGpu();
  const arch = opts.arch ?? "lenet5";
  checkArch(arch, "arch");
  const epochs = positiveInt(opts.epochs ?? TEACHER_DEFAULTS.epochs, "epochs");
  const seed = safeInt(opts.seed ?? 0, "seed");
  const lr = positive(opts.lr ?? TEACHER_DEFAULTS.lr, "lr");
  const schedule = opts.schedule ?? TEACHER_DEFAULTS.schedule;
  if (!LR_SCHEDULES.includes(schedule)) {
    throw new RangeError(`schedule must be one of ${LR_SCHEDULES.join(", ")}, got ${schedule}`);
  }
  const model = buildModel(arch, seed);
  try {
    checkLabelled(data, model.inputShape, "trainTeacher");
    const batchSize = Math.min(
      positiveInt(opts.batchSize ?? TEACHER_DEFAULTS.batchSize, "batchSize"),
      data.count,
    );
    const res = await trainClassifier(model, data, {
      epochs,
      batchSize,
      lr,
      schedule,
      seed,
      weightDecay: opts.weightDecay ?? 0,
      augment: opts.augment ?? false,
      inputNoise: opts.inputNoise ?? TEACHER_DEFAULTS.inputNoise,
      onProgress: opts.onProgress,
    });
    return { model, ...res };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Progress of {@link synthesizeTransferSet}, reported every `logEvery` iterations of a batch and
 * once when it is finished (`done`); the finished batch's soft targets come as `softTargets`.
 */
export type SynthesisProgress = Omit<SynthesisStageProgress, "resumed" | "targets"> & {
  /** On the `done` report only: the finished batch's soft targets `[bn, classes]` (a view). */
  softTargets?: Float32Array;
};

/**
 * Options of {@link synthesizeTransferSet}: any synthesis setting (defaults: {@link DEFAULTS}'s
 * `synthesis`, those of `deno task synth`), the seed, and a progress callback.
 */
export type SynthesizeOptions = Partial<SynthesisSettings> & {
  /** Seed of every random draw. Default 0. */
  seed?: number;
  /** Read the loss back every this many iterations. Default 10. */
  logEvery?: number;
  /**
   * Called every `logEvery` iterations of each batch, and once with `done: true` when a batch is
   * finished.
   */
  onProgress?: (p: SynthesisProgress) => void;
};

/** A synthesised transfer set, in host memory. */
export interface TransferSet {
  /** Images `[count, 1, 32, 32]` (the teacher's input shape), f32 in [0, 1]. */
  images: Float32Array;
  /** Soft targets `[count, classes]` at temperature τ: rows of probabilities that sum to 1. */
  softTargets: Float32Array;
  /** Number of images N. */
  count: number;
  /** Wall-clock seconds the synthesis took. */
  seconds: number;
}

/** A transfer set made by {@link synthesizeTransferSet}, with how its soft targets were drawn. */
export interface SynthesizedTransferSet extends TransferSet {
  /** Whether the soft targets are class-balanced (`balance` resolved). */
  balanced: boolean;
  /** The pilot that decided `balance: "auto"`, or null when balance was given as true or false. */
  pilot: BalancePilot | null;
}

/**
 * Synthesises a transfer set from the teacher alone (Wang, AAAI 2021, §3): samples pre-activations
 * `s^l ~ N(μ, σ² R)` of `layer` from the feature-space model (R from the cosine similarities of the
 * layer's weight rows), turns them into soft targets `y = softmax(T(s^l)/τ)` through the rest of
 * the teacher, then optimises noise images with Adam to minimise
 * `Σ_i [KL(y_i ‖ softmax(teacher(x̂_i)/τ)) + λ_a·L_a(x̂_i) + λ_tv·TV(x̂_i)]`, pixels clamped to
 * [0, 1]. With `balance: true` each image's class is drawn uniformly and its sample redrawn until
 * the teacher's head gives that class; with `"auto"` a pilot of the feature-space model decides
 * (`set.balanced`, `set.pilot`; default false). Each image
 * is optimised on its own from its own seeded generator, so the result does not depend on
 * `batchSize` (default `"auto"`: the most this adapter allows, capped where it stops paying).
 *
 * It runs the same synthesis stage as `deno task synth`, so equal settings and seed give the
 * CLI's transfer set on the same adapter. Freezes the teacher (`setTrainable(false)`).
 *
 * @param teacher a classifier on `[N, 1, 32, 32]` inputs with a fully connected layer `layer`.
 * @returns images `[N, 1, 32, 32]` in [0, 1], soft targets `[N, classes]`, whether they are
 *   class-balanced and the pilot that decided it (null unless `balance` was `"auto"`).
 * @throws {SettingError} (a `RangeError`) when a setting is out of range or `layer` is not a fully
 *   connected layer of the teacher; the message names the setting's key.
 * @throws {CheckpointError} when the layer's weights give no feature-space model (a degenerate
 *   teacher).
 * @throws {NumericalError} when the synthesis loss becomes NaN or infinite (lower `lr`).
 * @throws {NoAdapterError} when no WebGPU adapter is available.
 *
 * @example
 * ```ts ignore
 * const set = await synthesizeTransferSet(teacher, { samples: 2000, seed: 1 });
 * console.log(set.count, set.seconds, set.balanced);
 * ```
 */
export async function synthesizeTransferSet(
  teacher: Sequential,
  opts: SynthesizeOptions = {},
): Promise<SynthesizedTransferSet> {
  await initGpu();
  const { onProgress, seed, logEvery, ...synthesis } = opts;
  const cfg = resolveConfig({ overrides: { synthesis, seed, logEvery } });
  const out = await synthesisStage(teacher, cfg, {
    onProgress: (p) => {
      // One report per logged iteration and one when the batch is done.
      if (p.done || p.iteration < cfg.synthesis.iterations) {
        onProgress?.({
          batch: p.batch,
          batches: p.batches,
          iteration: p.iteration,
          samplesDone: p.samplesDone,
          samples: p.samples,
          loss: p.loss,
          done: p.done,
          images: p.images,
          softTargets: p.targets,
        });
      }
    },
  });
  // Without shouldStop the stage always returns a result.
  return {
    images: out!.images,
    softTargets: out!.targets,
    count: cfg.synthesis.samples,
    seconds: out!.seconds,
    balanced: out!.balance,
    pilot: out!.pilot,
  };
}

/**
 * Options of {@link distill}: any distillation setting (defaults: {@link DEFAULTS}'s
 * `distillation`, those of `deno task synth`: a `lenet5-half` student, 70 epochs of 128 images,
 * Adam at 0.002 with cosine decay, τ 2, shifts, flips and mixup relabelled by the teacher, no
 * adversarial exploration), the seed, the teacher's dataset and a progress callback.
 */
export type DistillOptions =
  & Partial<Omit<DistillationSettings, "adversarial">>
  & {
    /** Adversarial exploration; each field defaults to {@link DEFAULTS}'s. */
    adversarial?: Partial<AdversarialSettings>;
    /** Seed of the shuffling and augmentation; the student is built from `seed + 1`. Default 0. */
    seed?: number;
    /** Read the loss back every this many steps (each read is a GPU round trip). Default 10. */
    logEvery?: number;
    /**
     * The teacher's dataset: for `"mnist"`, `flip` defaults to false (digits are not
     * mirror-symmetric), as in `deno task synth`.
     */
    dataset?: string;
    /** Called every `logEvery` steps and at the end of each epoch. */
    onProgress?: (p: DistillProgress) => void;
  };

/** What {@link distill} returns. */
export interface DistillResult {
  /** The distilled student (frozen). Free it with `student.dispose()`. */
  student: Sequential;
  /** Wall-clock seconds of distillation. */
  seconds: number;
  /** Distillation throughput in images per second. */
  imagesPerSecond: number;
  /** KD loss `τ²·CE` (nats) of the last logged batch. */
  finalLoss: number;
}

/**
 * Distils a new student from the teacher on a transfer set (Wang, AAAI 2021, §3, step 4) with the
 * knowledge-distillation loss of Hinton et al. (2015): `τ² · CE(softmax(t/τ), softmax(s/τ))`,
 * t and s the teacher's and the student's logits. Each batch may be shifted, flipped and mixed and
 * is then relabelled by the teacher, so `transfer.softTargets` are not used here (only the
 * images). It runs the same distillation stage as `deno task synth` (the student is
 * `buildModel(student, seed + 1)`), so equal settings give the CLI's student.
 *
 * @param transfer a transfer set from {@link synthesizeTransferSet} (or any images `[N, 1, 32, 32]`
 *   in [0, 1]).
 * @returns the student and the loop's speed.
 * @throws {RangeError} when the transfer set is empty or its arrays do not match `count`.
 * @throws {SettingError} (a `RangeError`) when a setting is out of range; the message names it.
 * @throws {NumericalError} when the KD loss becomes NaN or infinite (lower `lr` or `tau`).
 * @throws {NoAdapterError} when no WebGPU adapter is available.
 *
 * @example
 * ```ts ignore
 * const { student } = await distill(teacher, set, { epochs: 50, onProgress: (p) => console.log(p.loss) });
 * ```
 */
export async function distill(
  teacher: Sequential,
  transfer: TransferSet,
  opts: DistillOptions = {},
): Promise<DistillResult> {
  await initGpu();
  const { onProgress, seed, logEvery, dataset, ...distillation } = opts;
  const cfg = resolveConfig({ dataset, overrides: { distillation, seed, logEvery } });
  const n = transfer.count;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`distill: transfer.count must be an integer >= 1, got ${n}`);
  }
  const per = teacher.inputShape.reduce((a, b) => a * b, 1);
  if (transfer.images.length !== n * per) {
    throw new RangeError(
      `distill: transfer.images holds ${transfer.images.length} values, not ` +
        `[${n}, ${teacher.inputShape}] (${n * per})`,
    );
  }
  const out = await distillationStage(teacher, transfer.images, n, cfg, { onProgress });
  return {
    student: out.student!,
    seconds: out.seconds,
    imagesPerSecond: out.imagesSeen / out.seconds,
    finalLoss: out.finalLoss,
  };
}

/**
 * Top-1 accuracy of a classifier on labelled images: the fraction in [0, 1] of images whose
 * largest logit is their label. Counts are accumulated on the GPU and read back once.
 *
 * @param data `images` `[count, 1, 32, 32]` f32, `labels` `[count]` (e.g. a real test split).
 * @throws {RangeError} when `data` is empty or its arrays do not match `count`.
 * @throws {NoAdapterError} when no WebGPU adapter is available.
 *
 * @example
 * ```ts ignore
 * const acc = await evaluate(student, await loadSplit(dir, "test"));
 * ```
 */
export async function evaluate(model: Sequential, data: LabelledImages): Promise<number> {
  await initGpu();
  checkLabelled(data, model.inputShape, "evaluate");
  return await evaluateModel(model, data);
}

// -- argument checks ------------------------------------------------------------------------

function checkArch(arch: string, name: string): void {
  if (!ARCHITECTURES.includes(arch as Architecture)) {
    throw new RangeError(
      `${name}: unknown architecture "${arch}"; use ${ARCHITECTURES.join(", ")}`,
    );
  }
}

function safeInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  return v;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
  }
  return v;
}

function positive(v: number, name: string): number {
  if (!(v > 0) || !Number.isFinite(v)) {
    throw new RangeError(`${name} must be a positive finite number, got ${v}`);
  }
  return v;
}

function checkLabelled(data: LabelledImages, chw: readonly number[], fn: string): void {
  const per = chw.reduce((a, b) => a * b, 1);
  const n = data.count;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`${fn}: data.count must be an integer >= 1, got ${n}`);
  }
  if (data.images.length !== n * per) {
    throw new RangeError(
      `${fn}: data.images holds ${data.images.length} values, not [${n}, ${chw}] (${n * per})`,
    );
  }
  if (data.labels.length < n) {
    throw new RangeError(`${fn}: data.labels holds ${data.labels.length} labels, not ${n}`);
  }
}
