/**
 * Distillation (Wang, AAAI 2021, §3, step 4; Hinton et al. 2015): the student is trained on the
 * transfer set with `τ² · CE(softmax(teacher(x)/τ), softmax(student(x)/τ))`.
 *
 * Each batch may be augmented (random ±2-pixel shifts, horizontal flips, mixup) and is then
 * relabelled by the teacher, so a fixed transfer set becomes a fresh stream of (image, teacher
 * output) pairs. Part of each batch may also be moved toward where the student and the teacher
 * disagree (see {@link AdversarialOptions}) before it is relabelled.
 * The batches are assembled on the adapter (`kd_batches.ts`). A step is queued GPU work; the
 * loss is read back every `logEvery` steps while the next steps are queued, and checked (and
 * reported) at the next report.
 *
 * @module
 */

import { kdDivergence } from "../autograd/functions.ts";
import { noGrad, Tape } from "../autograd/tape.ts";
import { copyBuffer } from "../gpu/runtime.ts";
import type { Sequential } from "../nn/layers.ts";
import { Adam, cosineLr } from "../nn/optim.ts";
import { signStep } from "../ops/optim.ts";
import { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import { KdBatches } from "./kd_batches.ts";
import { LossReadback } from "./loss_readback.ts";
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

/** One distillation step on the batch `x` (disposed by the caller); returns the KD loss. */
function kdStep(
  teacher: Sequential,
  student: Sequential,
  x: Tensor,
  adam: Adam,
  opts: DistillOptions,
): Tensor {
  const adv = opts.adversarial;
  const advN = adv?.steps ? Math.round(adv.fraction * x.shape[0]) : 0;
  if (adv && advN > 0) {
    const bytes = (advN * x.size * 4) / x.shape[0];
    const xa = Tensor.empty([advN, ...x.shape.slice(1)]);
    copyBuffer(x.buffer, xa.buffer, bytes);
    adversarialSteps(teacher, student, xa, opts.tau, adv);
    copyBuffer(xa.buffer, x.buffer, bytes);
  }
  const t = noGrad(() => teacher.forward(x));
  const tape = new Tape();
  const loss = tape.run(() => student.kdLoss(x, t, opts.tau));
  adam.step(tape.backward(loss, adam.params));
  return loss;
}

/** Where a distillation loss was taken: for its progress report and its error message. */
interface KdAt {
  epoch: number;
  s: number;
  step: number;
}

/** The check and report of each distillation loss read back. */
function kdReadback(steps: number, hooks: DistillHooks): LossReadback<KdAt> {
  return new LossReadback<KdAt>((loss, { epoch, s, step }) => {
    if (!Number.isFinite(loss)) {
      throw new NumericalError(
        `distillation loss became ${loss} at epoch ${epoch + 1}, step ${s + 1}; ` +
          `lower distillation.lr or distillation.tau`,
      );
    }
    hooks.onProgress?.({ epoch, step: step + 1, steps, loss });
  });
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
  const stepsPerEpoch = Math.max(1, Math.floor(count / bs));
  const steps = opts.epochs * stepsPerEpoch;
  student.setTrainable(true);
  teacher.setTrainable(false);
  const adam = new Adam(student.parameters().map((p) => p.value), { lr: opts.lr });
  if (resume) {
    adam.t = resume.t;
    adam.state().forEach((t, i) => t.write(resume.moments[i]));
  }
  const batches = new KdBatches(images, count, student.inputShape, bs, opts);
  const pending = kdReadback(steps, hooks);
  let imagesSeen = 0;
  try {
    for (let epoch = resume?.epoch ?? 0; epoch < opts.epochs; epoch++) {
      batches.epoch(new Rng(opts.seed).fork(`distill-epoch-${epoch}`));
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (hooks.shouldStop?.()) {
          await pending.settle();
          return { finalLoss: pending.value, imagesSeen, stopped: true };
        }
        const step = epoch * stepsPerEpoch + s;
        adam.opts.lr = cosineLr(opts.lr, step, steps);
        const report = (step + 1) % opts.logEvery === 0 || s === stepsPerEpoch - 1;
        const loss = tidy(() => {
          const loss = kdStep(teacher, student, batches.batch(s), adam, opts);
          return report ? loss : undefined;
        });
        imagesSeen += bs;
        if (loss) {
          await pending.start(loss, { epoch, s, step });
        }
      }
      await pending.settle();
      await hooks.onEpochEnd?.(epoch, async () => ({
        epoch: epoch + 1,
        t: adam.t,
        moments: await Promise.all(adam.state().map((m) => m.read())),
      }));
    }
  } finally {
    await pending.drop();
    batches.dispose();
    adam.dispose();
    student.setTrainable(false);
  }
  return { finalLoss: pending.value, imagesSeen, stopped: false };
}
