/**
 * Optimisers holding their state on the GPU; each step is queued kernels, no readback.
 *
 * @module
 */

import { type AdamOptions, adamStep, type SgdOptions, sgdStep } from "../ops/optim.ts";
import { Tensor } from "../tensor.ts";

/** Adam (Kingma & Ba, 2015) over a fixed list of parameters; `lr` may be changed between steps. */
export class Adam {
  #m: Tensor[];
  #v: Tensor[];
  /** Number of steps taken (the bias-correction step counter). */
  t = 0;
  /** Allocates zero moments for `params` on the GPU; `opts.lr` may be changed between steps. */
  constructor(readonly params: readonly Tensor[], public opts: AdamOptions) {
    this.#m = params.map((p) => Tensor.zeros(p.shape));
    this.#v = params.map((p) => Tensor.zeros(p.shape));
  }

  /** One update from `grads` (missing gradients are skipped). */
  step(grads: Map<Tensor, Tensor | null>): void {
    this.t++;
    this.params.forEach((p, i) => {
      const g = grads.get(p);
      if (g) adamStep(p, g, this.#m[i], this.#v[i], this.t, this.opts);
    });
  }

  /** The moment estimates, for checkpointing: `[m..., v...]`. */
  state(): Tensor[] {
    return [...this.#m, ...this.#v];
  }

  /** Frees the moment estimates. */
  dispose(): void {
    for (const t of [...this.#m, ...this.#v]) t.dispose();
  }
}

/** SGD with momentum over a fixed list of parameters. */
export class Sgd {
  #velocity: Tensor[];
  /** Allocates zero velocities for `params` on the GPU. */
  constructor(readonly params: readonly Tensor[], public opts: SgdOptions) {
    this.#velocity = params.map((p) => Tensor.zeros(p.shape));
  }

  /** One update from `grads`. */
  step(grads: Map<Tensor, Tensor | null>): void {
    this.params.forEach((p, i) => {
      const g = grads.get(p);
      if (g) sgdStep(p, g, this.#velocity[i], this.opts);
    });
  }

  /** Frees the velocity buffers. */
  dispose(): void {
    for (const t of this.#velocity) t.dispose();
  }
}

/** Cosine learning-rate schedule from `lr` at step 0 to `lr · floor` at `total` steps. */
export function cosineLr(lr: number, step: number, total: number, floor = 0.01): number {
  const p = Math.min(1, step / Math.max(1, total));
  return lr * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * p)));
}
