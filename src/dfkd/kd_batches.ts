/**
 * The batches of distillation: each epoch's order of the transfer set and each batch's
 * augmentation draws (±2-pixel shifts, horizontal flips, mixup) on the host, the images
 * assembled on the adapter by `gatherAugmented`. The transfer set is uploaded once when it fits
 * one storage binding; a larger one travels batch by batch (its source images only).
 *
 * @module
 */

import { gpuContext } from "../gpu/runtime.ts";
import { BatchDraws, gatherAugmented } from "../ops/augment.ts";
import type { Rng } from "../random.ts";
import { Tensor } from "../tensor.ts";

/** The augmentations of distillation batches. */
export interface KdAugmentation {
  /** Random shifts of up to ±2 pixels (zero fill). */
  shift: boolean;
  /** Random horizontal flips. */
  flip: boolean;
  /** Mixup inside the batch, `λ ~ U(0, 1)`. */
  mixup: boolean;
}

/** Largest shift of {@link KdAugmentation.shift}, in pixels. */
const MAX_SHIFT = 2;

/**
 * Batches of `n` images from `images: [count, ...chw]` in [0, 1]. The set is kept on the adapter
 * when it takes at most `maxResidentBytes` (default: the adapter's largest storage binding).
 */
export class KdBatches {
  readonly #per: number;
  /** The whole transfer set on the adapter, or null when it travels batch by batch. */
  readonly #resident: Tensor | null;
  readonly #staging: Float32Array | null;
  readonly #draws: BatchDraws;
  #order = new Uint32Array(0);
  #aug: Rng | undefined;
  #mix: Rng | undefined;

  constructor(
    readonly images: Float32Array,
    readonly count: number,
    readonly chw: readonly number[],
    readonly n: number,
    readonly augmentation: KdAugmentation,
    maxResidentBytes?: number,
  ) {
    this.#per = chw.reduce((a, b) => a * b, 1);
    const limits = gpuContext();
    const limit = maxResidentBytes ??
      Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const fits = count * this.#per * 4 <= limit;
    this.#resident = fits
      ? Tensor.from(images.subarray(0, count * this.#per), [count, ...chw])
      : null;
    this.#staging = fits ? null : new Float32Array(n * this.#per);
    this.#draws = new BatchDraws(n);
  }

  /** Starts an epoch: its order from `rng` (shuffled), then forks for the augmentation. */
  epoch(rng: Rng): void {
    this.#order = Uint32Array.from({ length: this.count }, (_, i) => i);
    rng.shuffle(this.#order);
    const { shift, flip, mixup } = this.augmentation;
    this.#aug = shift || flip ? rng.fork("augment") : undefined;
    this.#mix = mixup ? rng.fork("mixup") : undefined;
  }

  /** Batch `s` of the epoch, `[n, ...chw]` on the adapter (the caller disposes it). */
  batch(s: number): Tensor {
    const { shift, flip } = this.augmentation;
    const d = this.#draws;
    for (let i = 0; i < this.n; i++) {
      const k = this.#order[s * this.n + i];
      const aug = this.#aug;
      const dy = aug && shift ? aug.int(2 * MAX_SHIFT + 1) - MAX_SHIFT : 0;
      const dx = aug && shift ? aug.int(2 * MAX_SHIFT + 1) - MAX_SHIFT : 0;
      const f = aug !== undefined && flip && aug.uniform() < 0.5;
      d.setImage(i, this.#resident ? k : i, dy, dx, f);
      if (this.#staging) {
        this.#staging.set(this.images.subarray(k * this.#per, (k + 1) * this.#per), i * this.#per);
      }
    }
    d.clearMix();
    if (this.#mix) {
      for (let i = 0; i < this.n; i++) d.setMix(i, this.#mix.int(this.n), this.#mix.uniform());
    }
    if (this.#resident) return gatherAugmented(this.#resident, d);
    const src = Tensor.from(this.#staging!, [this.n, ...this.chw]);
    const out = gatherAugmented(src, d);
    src.dispose();
    return out;
  }

  /** Frees the adapter's copy of the transfer set. */
  dispose(): void {
    this.#resident?.dispose();
  }
}
