/**
 * Distillation (Wang, AAAI 2021, §3, step 4; Hinton et al. 2015): the student is trained on the
 * transfer set with `τ² · CE(softmax(teacher(x)/τ), softmax(student(x)/τ))`.
 *
 * Each batch may be augmented (random ±2-pixel shifts, horizontal flips, mixup) and is then
 * relabelled by the teacher, so a fixed transfer set becomes a fresh stream of (image, teacher
 * output) pairs. Part of each batch may also be moved toward where the student and the teacher
 * disagree (see {@link AdversarialOptions}) before it is relabelled.
 * A step is queued GPU work; the loss is read back every `logEvery` steps.
 *
 * @module
 */

import { kdDivergence, kdLoss } from "../autograd/functions.ts";
import { noGrad, Tape } from "../autograd/tape.ts";
import { copyBuffer } from "../gpu/runtime.ts";
import type { Sequential } from "../nn/layers.ts";
import { Adam, cosineLr } from "../nn/optim.ts";
import { signStep } from "../ops/optim.ts";
import { gatherBatch } from "../nn/train.ts";
import { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import { NumericalError } from "./synthesis.ts";
import type { AdversarialSettings, DistillationSettings } from "./settings.ts";
import type { TrainingState } from "../nn/checkpoint.ts";

/**
 * Adversarial exploration of the input space during distillation (after Micaelli & Storkey,
 * "Zero-shot Knowledge Transfer via Adversarial Belief Matching", NeurIPS 2019, and Fang et al.,
 * "Data-Free Adversarial Distillation", 2019, here without a generator): the first
 * `round(fraction · batchSize)` images of each augmented batch take `steps` signed-gradient
 * ascent steps of size `stepSize` on `KL(softmax(teacher(x)/τ) ‖ softmax(student(x)/τ))` (the
 * gradient flows through both networks), clamped to [0, 1]; the teacher then relabels them with
 * the rest.
 */
export type AdversarialOptions = AdversarialSettings;

/** Settings of the distillation loop: the stage's settings (the student aside), seed, log rate. */
export type DistillOptions = Omit<DistillationSettings, "student" | "adversarial"> & {
  /** Adversarial exploration (off when absent or `steps` is 0). */
  adversarial?: AdversarialOptions;
  /** Seed of the shuffling and augmentation. */
  seed: number;
  /** Read the loss back every this many steps. */
  logEvery: number;
};

/** Progress of distillation, reported every `logEvery` steps and at the end of each epoch. */
export interface DistillProgress {
  /** Current epoch, 0-based. */
  epoch: number;
  /** Steps finished so far, 1-based. */
  step: number;
  /** Total number of steps, `epochs · ⌊count / batchSize⌋`. */
  steps: number;
  /** KD loss `τ²·CE` (nats) of the batch of this step. */
  loss: number;
}

/** Where to continue from: the optimiser state saved at the end of an epoch. */
export type DistillState = TrainingState;

/** Hooks called by {@link distill}. */
export interface DistillHooks {
  onProgress?: (p: DistillProgress) => void;
  /** Called after each finished epoch with the state needed to resume after it. */
  onEpochEnd?: (epoch: number, state: () => Promise<DistillState>) => Promise<void>;
  /** Checked between steps; when it returns true the loop stops after the current epoch's step. */
  shouldStop?: () => boolean;
}

/**
 * Mixup (Zhang et al., ICLR 2018) inside a batch, in place: image `i` becomes
 * `λ·x_i + (1 − λ)·x_j` with `λ ~ U(0, 1)` (Beta(1, 1)) and `j` a random image of the same batch.
 * Distillation needs no mixed labels: the teacher relabels the mixed images.
 *
 * `batch: [n, per]` f32; `scratch` (at least `n · per` values) holds the unmixed copy, so a loop can
 * reuse one. Throws a `RangeError` when `batch` or `scratch` is shorter than `n · per`.
 */
export function mixBatch(
  batch: Float32Array,
  n: number,
  per: number,
  rng: Rng,
  scratch: Float32Array = new Float32Array(n * per),
): void {
  if (batch.length < n * per || scratch.length < n * per) {
    throw new RangeError(
      `mixBatch: batch (${batch.length}) and scratch (${scratch.length}) need ${n} × ${per} values`,
    );
  }
  const src = scratch;
  src.set(batch.subarray(0, n * per));
  for (let i = 0; i < n; i++) {
    const j = rng.int(n);
    const lambda = rng.uniform();
    const o = i * per;
    const p = j * per;
    for (let k = 0; k < per; k++) batch[o + k] = lambda * src[o + k] + (1 - lambda) * src[p + k];
  }
}

/**
 * Moves `x: [n, ...]` in place by `opts.steps` signed-gradient ascent steps on
 * `kdDivergence(teacher(x), student(x), tau)` (gradient through both networks), clamped to
 * [0, 1]. Queues GPU work only; neither network's parameters get a gradient.
 */
export function adversarialSteps(
  teacher: Sequential,
  student: Sequential,
  x: Tensor,
  tau: number,
  opts: AdversarialOptions,
): void {
  const params = student.parameters().map((p) => p.value);
  const trainable = params.map((p) => p.requiresGrad);
  student.setTrainable(false);
  x.requiresGrad = true;
  try {
    for (let k = 0; k < opts.steps; k++) {
      tidy(() => {
        const tape = new Tape();
        const loss = tape.run(() => kdDivergence(teacher.forward(x), student.forward(x), tau));
        signStep(x, tape.backward(loss, [x]).get(x)!, opts.stepSize, 0, 1);
      });
    }
  } finally {
    x.requiresGrad = false;
    params.forEach((p, i) => p.requiresGrad = trainable[i]);
  }
}

/**
 * Trains `student` to match `teacher` on `images: [count, ...inputShape]` in [0, 1].
 *
 * @throws {NumericalError} when the KD loss becomes NaN or infinite.
 */
export async function distill(
  teacher: Sequential,
  student: Sequential,
  images: Float32Array,
  count: number,
  opts: DistillOptions,
  hooks: DistillHooks = {},
  resume?: DistillState,
): Promise<{ finalLoss: number; imagesSeen: number; stopped: boolean }> {
  const bs = Math.min(opts.batchSize, count);
  const per = student.inputShape.reduce((a, b) => a * b, 1);
  const stepsPerEpoch = Math.max(1, Math.floor(count / bs));
  const steps = opts.epochs * stepsPerEpoch;
  student.setTrainable(true);
  teacher.setTrainable(false);
  const params = student.parameters().map((p) => p.value);
  const adam = new Adam(params, { lr: opts.lr });
  if (resume) {
    adam.t = resume.t;
    adam.state().forEach((t, i) => t.write(resume.moments[i]));
  }
  const adv = opts.adversarial?.steps ? opts.adversarial : undefined;
  const advN = adv ? Math.round(adv.fraction * bs) : 0;
  const batch = new Float32Array(bs * per);
  const mixScratch = opts.mixup ? new Float32Array(bs * per) : undefined;
  let finalLoss = NaN;
  let imagesSeen = 0;
  try {
    for (let epoch = resume?.epoch ?? 0; epoch < opts.epochs; epoch++) {
      const rng = new Rng(opts.seed).fork(`distill-epoch-${epoch}`);
      const idx = Uint32Array.from({ length: count }, (_, i) => i);
      rng.shuffle(idx);
      const aug = opts.shift || opts.flip ? rng.fork("augment") : undefined;
      const mix = opts.mixup ? rng.fork("mixup") : undefined;
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (hooks.shouldStop?.()) return { finalLoss, imagesSeen, stopped: true };
        const step = epoch * stepsPerEpoch + s;
        gatherBatch(images, idx, s * bs, bs, student.inputShape, batch, aug, opts.flip, opts.shift);
        if (mix) mixBatch(batch, bs, per, mix, mixScratch);
        adam.opts.lr = cosineLr(opts.lr, step, steps);
        const report = (step + 1) % opts.logEvery === 0 || s === stepsPerEpoch - 1;
        const loss = tidy(() => {
          const x = Tensor.from(batch, [bs, ...student.inputShape]);
          if (adv && advN > 0) {
            const xa = Tensor.from(batch.subarray(0, advN * per), [advN, ...student.inputShape]);
            adversarialSteps(teacher, student, xa, opts.tau, adv);
            copyBuffer(xa.buffer, x.buffer, advN * per * 4);
          }
          const t = noGrad(() => teacher.forward(x));
          const tape = new Tape();
          const loss = tape.run(() => kdLoss(t, student.forward(x), opts.tau));
          adam.step(tape.backward(loss, params));
          return report ? loss : undefined;
        });
        imagesSeen += bs;
        if (loss) {
          finalLoss = (await loss.read())[0];
          loss.dispose();
          if (!Number.isFinite(finalLoss)) {
            throw new NumericalError(
              `distillation loss became ${finalLoss} at epoch ${epoch + 1}, step ${s + 1}; ` +
                `lower distillation.lr or distillation.tau`,
            );
          }
          hooks.onProgress?.({ epoch, step: step + 1, steps, loss: finalLoss });
        }
      }
      await hooks.onEpochEnd?.(epoch, async () => ({
        epoch: epoch + 1,
        t: adam.t,
        moments: await Promise.all(adam.state().map((m) => m.read())),
      }));
    }
  } finally {
    adam.dispose();
    student.setTrainable(false);
  }
  return { finalLoss, imagesSeen, stopped: false };
}
