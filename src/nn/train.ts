/**
 * Supervised training of a classifier with cross-entropy (used for teachers), and evaluation.
 *
 * A step is queued GPU work only: upload the batch, forward, backward, Adam. The loss is read back
 * every `logEvery` steps, never inside a step.
 *
 * @module
 */

import { crossEntropyLoss } from "../autograd/functions.ts";
import { noGrad, Tape } from "../autograd/tape.ts";
import { accumulate, argmax, correctCount } from "../ops/metrics.ts";
import { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import type { Sequential } from "./layers.ts";
import { Adam, cosineLr } from "./optim.ts";

/** Images and integer labels in host memory. */
export interface LabelledImages {
  /** [count, ...inputShape] f32, pixels in [0, 1]. */
  images: Float32Array;
  /** [count] class indices. */
  labels: Uint32Array;
  /** Number of images. */
  count: number;
}

/** Progress of a training run, reported every `logEvery` steps. */
export interface TrainProgress {
  /** Current epoch, 0-based. */
  epoch: number;
  /** Number of epochs. */
  epochs: number;
  /** Steps finished so far, 1-based. */
  step: number;
  /** Total number of steps, `epochs · ⌊count / batchSize⌋`. */
  steps: number;
  /** Mean cross-entropy of the last read batch. */
  loss: number;
}

/** Options of {@link trainClassifier}. */
export interface TrainClassifierOptions {
  epochs: number;
  batchSize: number;
  /** Adam learning rate: the peak of the cosine schedule, or the constant rate. */
  lr: number;
  /** `cosine` (decay to 1% of `lr` over all steps, the default) or `constant`. */
  schedule?: LrSchedule;
  seed: number;
  weightDecay?: number;
  /** Random ±2-pixel shifts (and horizontal flips when `flip`) of each training batch. */
  augment?: boolean;
  flip?: boolean;
  /**
   * Standard deviation of Gaussian noise added to every training pixel (0 = off; no clamping).
   * Noise-trained teachers invert into transfer sets that distil better (`bench/results/sweeps.md`).
   */
  inputNoise?: number;
  logEvery?: number;
  onProgress?: (p: TrainProgress) => void;
}

/** Learning-rate schedules of {@link trainClassifier}. */
export type LrSchedule = "cosine" | "constant";

/** Every schedule, for flag validation. */
export const LR_SCHEDULES: readonly LrSchedule[] = ["cosine", "constant"];

/**
 * Defaults of teacher training (`deno task train-teacher`, `trainTeacher`): the recipe of the bundled
 * teachers. Teachers trained at a constant, moderate rate on large batches, with Gaussian noise on
 * the input pixels, invert into transfer sets that distil far better than sharper ones
 * (`bench/results/sweeps.md`). `inputNoise` is `trainTeacher`'s default and the MNIST recipe's;
 * `deno task train-teacher` takes it per dataset from {@link TEACHER_INPUT_NOISE}.
 */
export const TEACHER_DEFAULTS: {
  readonly epochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly schedule: LrSchedule;
  readonly inputNoise: number;
} = { epochs: 15, batchSize: 256, lr: 0.001, schedule: "constant", inputNoise: 0.2 };

/**
 * Teacher input noise (standard deviation, pixel units) whose teachers distilled best, per dataset:
 * `deno task train-teacher`'s default. Fashion-MNIST 0.35 (tried 0 to 0.5; 0.3 to 0.5 are within
 * seed noise of each other), MNIST 0.2 (tried 0, 0.2 and 0.35); `bench/results/sweeps.md`, "How much
 * input noise for the teacher".
 */
export const TEACHER_INPUT_NOISE: Readonly<Record<"fashion-mnist" | "mnist", number>> = {
  "fashion-mnist": 0.35,
  mnist: 0.2,
};

/** What {@link trainClassifier} measured. */
export interface TrainResult {
  seconds: number;
  imagesPerSecond: number;
  finalLoss: number;
}

/**
 * Copies the images `idx[start..start+n)` into `out`; with `rng`, each is shifted by a random
 * ±2 pixels (when `shift`) and flipped horizontally with probability 1/2 (when `flip`).
 */
export function gatherBatch(
  src: Float32Array,
  idx: ArrayLike<number>,
  start: number,
  n: number,
  chw: readonly number[],
  out: Float32Array,
  rng?: Rng,
  flip = false,
  shift = true,
): void {
  const [c, h, w] = chw;
  const per = c * h * w;
  for (let i = 0; i < n; i++) {
    const s = idx[start + i] * per;
    const o = i * per;
    if (!rng) {
      out.set(src.subarray(s, s + per), o);
      continue;
    }
    const dy = shift ? rng.int(5) - 2 : 0;
    const dx = shift ? rng.int(5) - 2 : 0;
    const f = flip && rng.uniform() < 0.5;
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        const sy = y - dy;
        for (let x = 0; x < w; x++) {
          const sx0 = x - dx;
          const sx = f ? w - 1 - sx0 : sx0;
          out[o + (ch * h + y) * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w
            ? src[s + (ch * h + sy) * w + sx]
            : 0;
        }
      }
    }
  }
}

/**
 * Trains `model` on labelled images with cross-entropy and Adam (cosine or constant rate).
 *
 * @throws {Error} when the loss becomes NaN or infinite (lower `lr`).
 */
export async function trainClassifier(
  model: Sequential,
  data: LabelledImages,
  opts: TrainClassifierOptions,
): Promise<TrainResult> {
  const { epochs, batchSize } = opts;
  const logEvery = opts.logEvery ?? 20;
  const rng = new Rng(opts.seed);
  const augRng = rng.fork("augment");
  const noiseRng = rng.fork("input-noise");
  const inputNoise = opts.inputNoise ?? 0;
  if (!(inputNoise >= 0 && Number.isFinite(inputNoise))) {
    throw new RangeError(`inputNoise must be a finite number >= 0, got ${inputNoise}`);
  }
  const per = model.inputShape.reduce((a, b) => a * b, 1);
  const stepsPerEpoch = Math.floor(data.count / batchSize);
  const steps = epochs * stepsPerEpoch;
  model.setTrainable(true);
  const params = model.parameters().map((p) => p.value);
  const adam = new Adam(params, { lr: opts.lr, weightDecay: opts.weightDecay ?? 0 });
  const batch = new Float32Array(batchSize * per);
  const noise = inputNoise > 0 ? new Float32Array(batchSize * per) : undefined;
  const labels = new Uint32Array(batchSize);
  const t0 = performance.now();
  let finalLoss = NaN;
  let step = 0;
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const idx = Uint32Array.from({ length: data.count }, (_, i) => i);
      rng.shuffle(idx);
      for (let s = 0; s < stepsPerEpoch; s++, step++) {
        gatherBatch(
          data.images,
          idx,
          s * batchSize,
          batchSize,
          model.inputShape,
          batch,
          opts.augment ? augRng : undefined,
          opts.flip,
        );
        if (noise) {
          noiseRng.fillNormal(noise, 0, inputNoise);
          for (let i = 0; i < batch.length; i++) batch[i] += noise[i];
        }
        for (let i = 0; i < batchSize; i++) labels[i] = data.labels[idx[s * batchSize + i]];
        if (opts.schedule !== "constant") adam.opts.lr = cosineLr(opts.lr, step, steps);
        const report = step % logEvery === logEvery - 1 || step === steps - 1;
        const loss = tidy(() => {
          const x = Tensor.from(batch, [batchSize, ...model.inputShape]);
          const y = Tensor.from(labels);
          const tape = new Tape();
          const loss = tape.run(() => crossEntropyLoss(model.forward(x), y));
          adam.step(tape.backward(loss, params));
          return report ? loss : undefined;
        });
        if (loss) {
          finalLoss = (await loss.read())[0];
          loss.dispose();
          if (!Number.isFinite(finalLoss)) {
            throw new Error(
              `training loss became ${finalLoss} at step ${step}; lower the learning rate (lr)`,
            );
          }
          opts.onProgress?.({ epoch, epochs, step: step + 1, steps, loss: finalLoss });
        }
      }
    }
  } finally {
    adam.dispose();
    model.setTrainable(false);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, imagesPerSecond: (steps * batchSize) / seconds, finalLoss };
}

/**
 * Top-1 accuracy of `model` on labelled images, as a fraction in [0, 1]. Counts are accumulated on
 * the GPU and read back once.
 */
export async function evaluate(
  model: Sequential,
  data: LabelledImages,
  batchSize = 500,
): Promise<number> {
  const per = model.inputShape.reduce((a, b) => a * b, 1);
  const total = Tensor.zeros([1]);
  for (let start = 0; start < data.count; start += batchSize) {
    const n = Math.min(batchSize, data.count - start);
    tidy(() =>
      noGrad(() => {
        const x = Tensor.from(
          data.images.subarray(start * per, (start + n) * per),
          [n, ...model.inputShape],
        );
        const y = Tensor.from(data.labels.subarray(start, start + n));
        accumulate(total, correctCount(model.forward(x), y));
      })
    );
  }
  const correct = (await total.read())[0];
  total.dispose();
  return correct / data.count;
}

/**
 * The model's top-1 class for every image (the first maximum on ties), one readback per batch.
 *
 * @param images `[count, ...inputShape]` f32.
 * @returns `[count]` class indices.
 * @throws {RangeError} when `images` holds fewer than `count` images.
 */
export async function predict(
  model: Sequential,
  images: Float32Array,
  count: number,
  batchSize = 500,
): Promise<Uint32Array> {
  const per = model.inputShape.reduce((a, b) => a * b, 1);
  if (images.length < count * per) {
    throw new RangeError(
      `predict: ${count} images of [${model.inputShape}] need ${count * per} values, ` +
        `got ${images.length}`,
    );
  }
  const out = new Uint32Array(count);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const classes = tidy(() =>
      noGrad(() =>
        argmax(model.forward(
          Tensor.from(images.subarray(start * per, (start + n) * per), [n, ...model.inputShape]),
        ))
      )
    );
    out.set(await classes.readU32(), start);
    classes.dispose();
  }
  return out;
}
