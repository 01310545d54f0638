/**
 * Transfer-set synthesis (Wang, AAAI 2021, §3, step 3): noise images `x̂` are optimised with Adam
 * through the frozen teacher to minimise
 * `(1/n) Σ_i KL(y_soft_i ‖ softmax(teacher(x̂_i)/τ)) + λ_a · L_a(conv1(x̂))`,
 * pixels clamped to [0, 1] after every step.
 *
 * Each iteration is queued GPU work (forward, backward to the pixels only, Adam+clamp): nothing is
 * read back except the loss every `logEvery` iterations.
 *
 * @module
 */

import { activationLoss, add, conv2d, shift2d } from "../autograd/functions.ts";
import { noGrad, Tape } from "../autograd/tape.ts";
import type { Sequential } from "../nn/layers.ts";
import type { ActivationNorm } from "../ops/loss.ts";
import { adamStep } from "../ops/optim.ts";
import type { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import { NumericalError } from "../errors.ts";

export { NumericalError };

/** Settings of one synthesis batch. */
export interface SynthesisOptions {
  /** Adam iterations per batch. */
  iterations: number;
  /** Adam learning rate on the pixels. */
  lr: number;
  /** Temperature τ of the teacher's softmax in the KL term. */
  tau: number;
  /** λ_a, weight of the activation loss (0 disables it and skips its work). */
  lambdaAct: number;
  /** Normalisation of L_a: the paper's per-sample L1 sum, or the mean over elements. */
  actNorm: ActivationNorm;
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

/** A logged synthesis loss. */
export interface SynthesisLog {
  iteration: number;
  /** Total loss `KL + λ_a L_a`. */
  loss: number;
}

/** One synthesised batch: images `[n, 1, 32, 32]` in [0, 1] and the final loss. */
export interface SynthesisResult {
  images: Float32Array;
  loss: number;
}

/**
 * Optimises `n` noise images toward the soft targets `targets: [n, classes]`. Returns `null` when
 * `shouldStop` turned true (checked before each iteration).
 *
 * @throws {NumericalError} when the loss becomes NaN or infinite.
 */
export async function synthesizeBatch(
  teacher: Sequential,
  targets: Tensor,
  rng: Rng,
  opts: SynthesisOptions,
  onLog?: (log: SynthesisLog) => void,
  shouldStop?: () => boolean,
): Promise<SynthesisResult | null> {
  const n = targets.shape[0];
  const shape = [n, ...teacher.inputShape];
  const init = new Float32Array(shape.reduce((a, b) => a * b, 1));
  rng.fillUniform(init, 0, 1);
  const x = Tensor.from(init, shape);
  x.requiresGrad = true;
  const m = Tensor.zeros(shape);
  const v = Tensor.zeros(shape);
  const capture = opts.lambdaAct > 0 ? ["conv1"] : [];
  const jitter = opts.jitter ?? 0;
  const smooth = opts.smooth ?? 0;
  const kernel = smooth > 0 ? gaussianKernel(smooth) : null;
  const g = kernel ? Tensor.from(kernel.data, [1, 1, kernel.size, kernel.size]) : null;
  const image = (z: Tensor) => g ? conv2d(z, g, null, { padding: (kernel!.size - 1) / 2 }) : z;
  const jitterRng = rng.fork("jitter");
  let last = NaN;
  try {
    for (let it = 1; it <= opts.iterations; it++) {
      if (shouldStop?.()) return null;
      const report = it % opts.logEvery === 0 || it === opts.iterations;
      const dy = jitter > 0 ? jitterRng.int(2 * jitter + 1) - jitter : 0;
      const dx = jitter > 0 ? jitterRng.int(2 * jitter + 1) - jitter : 0;
      const flip = opts.flip === true && jitterRng.uniform() < 0.5;
      const loss = tidy(() => {
        const tape = new Tape();
        const loss = tape.run(() => {
          const xi = image(x);
          const input = dy !== 0 || dx !== 0 || flip ? shift2d(xi, dy, dx, flip) : xi;
          const { loss: kl, captured } = teacher.klDivLoss(input, targets, opts.tau, capture);
          if (opts.lambdaAct <= 0) return kl;
          return add(kl, activationLoss(captured.get("conv1")!, opts.actNorm), 1, opts.lambdaAct);
        });
        const g = tape.backward(loss, [x]).get(x)!;
        adamStep(x, g, m, v, it, { lr: opts.lr, clampMin: 0, clampMax: 1 });
        return report ? loss : undefined;
      });
      if (loss) {
        last = (await loss.read())[0];
        loss.dispose();
        if (!Number.isFinite(last)) {
          throw new NumericalError(
            `synthesis loss became ${last} at iteration ${it}; lower synthesis.lr or synthesis.tau`,
          );
        }
        onLog?.({ iteration: it, loss: last });
      }
    }
    if (!g) return { images: await x.read(), loss: last };
    const out = noGrad(() => image(x));
    try {
      return { images: await out.read(), loss: last };
    } finally {
      out.dispose();
    }
  } finally {
    g?.dispose();
    x.dispose();
    m.dispose();
    v.dispose();
  }
}
