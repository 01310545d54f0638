/**
 * Transfer-set synthesis (Wang, AAAI 2021, §3, step 3): noise images `x̂` are optimised with Adam
 * through the frozen teacher to minimise
 * `Σ_i [KL(y_soft_i ‖ softmax(teacher(x̂_i)/τ)) + λ_a · L_a(conv1(x̂_i)) + λ_tv · TV(x̂_i)]`,
 * pixels clamped to [0, 1] after every step.
 *
 * Batch invariance: each image is optimised on its own, so its result does not depend on the
 * batch it is in or on the batch size. The loss is the sum of per-image terms (not the batch
 * mean), so the gradient each image's pixels get, and hence Adam's step, is the same whatever the
 * batch size; each image has its own generator for its initial noise and its jitter and flip
 * draws; and the kernels compute each image's rows in an order that does not depend on N. The
 * paper's `(1/n)` mean differs from this sum by a constant factor, which Adam's update ignores
 * (up to its ε).
 *
 * Each iteration is queued GPU work (forward, backward to the pixels only, Adam+clamp): nothing is
 * read back except the loss every `logEvery` iterations.
 *
 * @module
 */

import {
  activationLoss,
  add,
  conv2d,
  shift2dPerImage,
  totalVariation,
  upsampleBilinear,
} from "../autograd/functions.ts";
import { noGrad, Tape } from "../autograd/tape.ts";
import type { Sequential } from "../nn/layers.ts";
import type { ActivationNorm } from "../ops/loss.ts";
import { adamStep, adamTvJitterStep, adamTvStep } from "../ops/optim.ts";
import { type ImageShift, shift2dPerImage as shiftImages } from "../ops/shift.ts";
import type { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import { NumericalError } from "../errors.ts";
import { LossReadback } from "./loss_readback.ts";

export { NumericalError };

/** Settings of one synthesis batch. */
export interface SynthesisOptions {
  /** Adam iterations per batch. */
  iterations: number;
  /** Adam learning rate on the pixels. */
  lr: number;
  /**
   * Upper bound `b` of each image's initial noise `U(0, b)`, in (0, 1] (default 1, the full
   * range; the setting `synthesis.initMax` of a run has its own default, a dark start).
   */
  initMax?: number;
  /** Temperature τ of the teacher's softmax in the KL term. */
  tau: number;
  /** λ_a, weight of the activation loss (0 disables it and skips its work). */
  lambdaAct: number;
  /** Normalisation of L_a: the paper's per-sample L1 sum, or the mean over elements. */
  actNorm: ActivationNorm;
  /**
   * λ_tv, weight of the total-variation prior on the images (Mahendran & Vedaldi, 2015;
   * DeepInversion): the batch mean of each image's mean absolute neighbour difference, taken on
   * the image before jitter and flips (0 or absent disables it).
   */
  lambdaTv?: number;
  /** Read the loss back every this many iterations (and at the last). */
  logEvery: number;
  /**
   * Random circular shifts of up to this many pixels applied to the images before each forward
   * pass (DeepInversion's jitter; 0 = off), so the pixels are optimised to be recognised at any
   * of those positions.
   */
  jitter?: number;
  /** Random horizontal flips before each forward pass (with probability 1/2). */
  flip?: boolean;
  /**
   * Low-resolution pixel parametrisation: the optimised variables `z ∈ [0, 1]` are images of
   * `1/lowRes` the input's height and width, and the teacher sees their bilinear upsampling
   * (Mordvintsev et al.'s parametrisations; DeepInversion's multi-resolution start). 1 or absent
   * = off. The input's height and width must be multiples of it. The initial noise is drawn at
   * full resolution and averaged over each `lowRes × lowRes` block.
   */
  lowRes?: number;
  /**
   * Smooth pixel parametrisation: the image is `G_s * z`, a Gaussian blur of standard deviation
   * `s` pixels of the optimised variables `z ∈ [0, 1]` (0 = off: the image is `z`). The blur's
   * weights sum to 1, so images stay in [0, 1]; it removes the high-frequency patterns that fool
   * the teacher but do not transfer to a student.
   */
  smooth?: number;
}

/** A normalised 2-D Gaussian kernel `[1, 1, k, k]`, k = 2·ceil(2s)+1. */
export function gaussianKernel(s: number): { data: Float32Array; size: number } {
  const r = Math.ceil(2 * s);
  const size = 2 * r + 1;
  const g1 = Array.from({ length: size }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * s * s)));
  const sum = g1.reduce((a, b) => a + b, 0);
  const data = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) data[y * size + x] = (g1[y] * g1[x]) / (sum * sum);
  }
  return { data, size };
}

/**
 * The synthesis loss of one iteration on the tape, summed over images:
 * `Σ_i KL(targets_i ‖ softmax(teacher(input_i)/τ)) + λ_a L_a + λ_tv TV(prior)`, the last term only
 * when `prior` (the image before jitter) is given.
 */
function synthesisLoss(
  teacher: Sequential,
  input: Tensor,
  targets: Tensor,
  opts: SynthesisOptions,
  prior: Tensor | null,
): Tensor {
  const capture = opts.lambdaAct > 0 ? ["conv1"] : [];
  const fit = teacher.klDivLoss(input, targets, opts.tau, capture, "sum");
  let loss = fit.loss;
  if (opts.lambdaAct > 0) {
    const act = activationLoss(fit.captured.get("conv1")!, opts.actNorm, "sum");
    loss = add(loss, act, 1, opts.lambdaAct);
  }
  if (prior) loss = add(loss, totalVariation(prior, "sum"), 1, opts.lambdaTv ?? 0);
  return loss;
}

/** A logged synthesis loss. */
export interface SynthesisLog {
  iteration: number;
  /** Total loss `KL + λ_a L_a + λ_tv TV` per image (the batch's sum divided by n). */
  loss: number;
}

/** One synthesised batch: images `[n, 1, 32, 32]` in [0, 1] and the final loss. */
export interface SynthesisResult {
  images: Float32Array;
  loss: number;
}

/**
 * The generator of each of `n` images: `rng` itself when it is one per image, else
 * `rng.fork("image-i")` for image i.
 */
function perImage(rng: Rng | readonly Rng[], n: number): readonly Rng[] {
  if (!Array.isArray(rng)) {
    return Array.from({ length: n }, (_, i) => (rng as Rng).fork(`image-${i}`));
  }
  if (rng.length !== n) {
    throw new RangeError(`synthesizeBatch: ${rng.length} generators for ${n} images`);
  }
  return rng;
}

/**
 * The batch's initial noise, `[n, c, h/f, w/f]` flattened for `n = rngs.length`: each image's
 * `U(0, hi)` noise of shape `[c, h, w]`, drawn from its generator's `pixels` fork, then averaged
 * over `f × f` blocks when `f > 1` (the low-resolution parametrisation).
 */
function initialPixels(
  rngs: readonly Rng[],
  [c, h, w]: readonly number[],
  hi: number,
  f: number,
): Float32Array {
  const per = c * h * w;
  const full = new Float32Array(rngs.length * per);
  rngs.forEach((r, i) =>
    r.fork("pixels").fillUniform(full.subarray(i * per, (i + 1) * per), 0, hi)
  );
  if (f === 1) return full;
  const [lh, lw] = [h / f, w / f];
  const low = new Float32Array(rngs.length * c * lh * lw);
  for (let p = 0; p < rngs.length * c; p++) {
    for (let y = 0; y < lh; y++) {
      for (let x = 0; x < lw; x++) {
        let sum = 0;
        for (let dy = 0; dy < f; dy++) {
          for (let dx = 0; dx < f; dx++) sum += full[(p * h + y * f + dy) * w + x * f + dx];
        }
        low[(p * lh + y) * lw + x] = sum / (f * f);
      }
    }
  }
  return low;
}

/**
 * This iteration's shift of each image, drawn from its own `jitter` stream (dy, dx uniform in
 * [−jitter, jitter], then a flip with probability 1/2 when `flip`), or null when nothing moves.
 */
function drawShifts(streams: readonly Rng[], jitter: number, flip: boolean): ImageShift[] | null {
  if (jitter <= 0 && !flip) return null;
  return streams.map((r) => {
    const dy = jitter > 0 ? r.int(2 * jitter + 1) - jitter : 0;
    const dx = jitter > 0 ? r.int(2 * jitter + 1) - jitter : 0;
    return { dy, dx, flip: flip && r.uniform() < 0.5 };
  });
}

/**
 * Optimises `n` noise images toward the soft targets `targets: [n, classes]`. `rng` is one
 * generator per image (image i's initial noise comes from `rng[i].fork("pixels")`, its jitter and
 * flips from `rng[i].fork("jitter")`), or one generator whose `fork("image-i")` is image i's.
 * Returns `null` when `shouldStop` turned true (checked before each iteration).
 *
 * @throws {NumericalError} when the loss becomes NaN or infinite.
 * @throws {RangeError} when `rng` is an array without one generator per image.
 */
export async function synthesizeBatch(
  teacher: Sequential,
  targets: Tensor,
  rng: Rng | readonly Rng[],
  opts: SynthesisOptions,
  onLog?: (log: SynthesisLog) => void,
  shouldStop?: () => boolean,
): Promise<SynthesisResult | null> {
  const n = targets.shape[0];
  const rngs = perImage(rng, n);
  const jitterRngs = rngs.map((r) => r.fork("jitter"));
  const draw = () => drawShifts(jitterRngs, opts.jitter ?? 0, opts.flip === true);
  let shifts = draw(); // the first iteration's; each iteration draws the next one's
  const px = new Pixels(rngs, [n, ...teacher.inputShape], opts, shifts);
  const pending = new LossReadback<number>((total, iteration) => {
    const loss = total / n;
    if (!Number.isFinite(loss)) {
      throw new NumericalError(
        `synthesis loss became ${loss} at iteration ${iteration}; ` +
          `lower synthesis.lr or synthesis.tau`,
      );
    }
    onLog?.({ iteration, loss });
  });
  try {
    for (let it = 1; it <= opts.iterations; it++) {
      if (shouldStop?.()) {
        await pending.settle();
        return null;
      }
      const report = it % opts.logEvery === 0 || it === opts.iterations;
      const now = shifts;
      const next = it < opts.iterations ? draw() : null;
      const loss = tidy(() => {
        const tape = new Tape();
        const jittered = px.jittered; // the copy the step made, when the step does the jitter
        const loss = tape.run(() => {
          const xi = px.image();
          const input = jittered ?? (now ? shift2dPerImage(xi, now) : xi);
          return synthesisLoss(teacher, input, targets, opts, px.priorOnTape ? xi : null);
        });
        const wrt = jittered ?? px.x;
        const grad = tape.backward(loss, [wrt]).get(wrt)!;
        // the logged loss is that of the pixels before this step, prior included
        const logged = report ? px.withPrior(loss) : undefined;
        px.step(grad, it, now, next);
        return logged;
      });
      shifts = next;
      if (loss) await pending.start(loss, it); // checked at the next report, while more is queued
    }
    const out = px.parametrised ? tidy(() => noGrad(() => px.image())) : px.x;
    try {
      const images = out.readLater();
      await pending.settle();
      return { images: await images(), loss: pending.value / n };
    } finally {
      if (out !== px.x) out.dispose();
    }
  } finally {
    await pending.drop();
    px.dispose();
  }
}

/**
 * The optimised variables of a synthesis batch: the pixels (or, with the low-resolution or blur
 * parametrisation, the z that the images are the upsampling or the blur of), their Adam state,
 * and the rule of one step. On plain pixels the total-variation prior's gradient joins the Adam step in one pass, which reads the
 * pixels and writes the next ones to a second buffer (then the two swap). Under jitter on plain
 * pixels that pass also takes the jitter's backward pass and writes the next iteration's
 * jittered copy ({@link jittered}), so the jitter costs no dispatch of its own.
 */
class Pixels {
  x: Tensor;
  #next: Tensor | null;
  readonly #m: Tensor;
  readonly #v: Tensor;
  /** The blur kernel `[1, 1, k, k]` of the smooth parametrisation, or null. */
  readonly blur: Tensor | null;
  /** The upsampling factor of the low-resolution parametrisation (1 = off). */
  readonly lowRes: number;
  /** Whether the images are a function of the optimised variables (upsampling, blur). */
  readonly parametrised: boolean;
  /** Whether the prior is a term on the tape (through the parametrisation), not in the step. */
  readonly priorOnTape: boolean;
  /**
   * The jittered copy of the pixels the teacher sees this iteration, written by the previous
   * step (the first by the constructor), or null when the jitter is an op on the tape
   * (parametrised images) or off.
   */
  readonly jittered: Tensor | null;
  readonly #tvInStep: boolean;
  readonly #lambdaTv: number;
  readonly #lr: number;

  constructor(
    rngs: readonly Rng[],
    shape: number[],
    opts: SynthesisOptions,
    first: readonly ImageShift[] | null,
  ) {
    const f = opts.lowRes ?? 1;
    const [n, c, h, w] = shape;
    if (!Number.isInteger(f) || f < 1 || h % f !== 0 || w % f !== 0) {
      throw new RangeError(
        `synthesis: lowRes ${f} must be a positive integer dividing ${h} and ${w}`,
      );
    }
    const initMax = opts.initMax ?? 1;
    if (!(initMax > 0 && initMax <= 1)) {
      throw new RangeError(`synthesis: initMax must be in (0, 1]; got ${initMax}`);
    }
    this.lowRes = f;
    const own = [n, c, h / f, w / f]; // the optimised variables' shape
    this.x = Tensor.from(initialPixels(rngs, [c, h, w], initMax, f), own);
    this.x.requiresGrad = true;
    this.#m = Tensor.zeros(own);
    this.#v = Tensor.zeros(own);
    const smooth = opts.smooth ?? 0;
    const kernel = smooth > 0 ? gaussianKernel(smooth) : null;
    this.blur = kernel ? Tensor.from(kernel.data, [1, 1, kernel.size, kernel.size]) : null;
    this.parametrised = this.blur !== null || f > 1;
    this.#lambdaTv = opts.lambdaTv ?? 0;
    this.priorOnTape = this.#lambdaTv > 0 && this.parametrised;
    this.#tvInStep = this.#lambdaTv > 0 && !this.priorOnTape;
    this.jittered = first && !this.parametrised ? shiftImages(this.x, first) : null;
    if (this.jittered) this.jittered.requiresGrad = true;
    this.#next = this.#tvInStep || this.jittered ? Tensor.empty(own) : null;
    this.#lr = opts.lr;
  }

  /** The images: the pixels, or the upsampling and then the blur of z. */
  image(): Tensor {
    const up = this.lowRes > 1 ? upsampleBilinear(this.x, this.lowRes) : this.x;
    const g = this.blur;
    if (!g) return up;
    return conv2d(up, g, null, { padding: (g.shape[2] - 1) / 2 });
  }

  /** `loss` with the prior's term added when the prior is in the step (not on the tape). */
  withPrior(loss: Tensor): Tensor {
    if (!this.#tvInStep) return loss;
    return add(loss, totalVariation(this.x, "sum"), 1, this.#lambdaTv);
  }

  /**
   * One Adam step (clamped to [0, 1]) on `grad`, the prior's gradient joined when in the step.
   * With {@link jittered}, `grad` is that copy's gradient, taken at shifts `now`, and the step
   * writes the copy for shifts `next` (none after the last iteration).
   */
  step(
    grad: Tensor,
    t: number,
    now: readonly ImageShift[] | null,
    next: readonly ImageShift[] | null,
  ): void {
    const opts = { lr: this.#lr, clampMin: 0, clampMax: 1 };
    if (!this.#next) {
      adamStep(this.x, grad, this.#m, this.#v, t, opts);
      return;
    }
    if (this.jittered && now) {
      adamTvJitterStep(
        this.x,
        grad,
        this.#m,
        this.#v,
        t,
        opts,
        this.#lambdaTv,
        this.#next,
        now,
        next,
        this.jittered,
      );
    } else {
      adamTvStep(this.x, grad, this.#m, this.#v, t, opts, this.#lambdaTv, this.#next);
    }
    [this.x, this.#next] = [this.#next, this.x];
    this.#next.requiresGrad = false;
    this.x.requiresGrad = true;
  }

  dispose(): void {
    for (const t of [this.x, this.#next, this.#m, this.#v, this.blur, this.jittered]) t?.dispose();
  }
}
