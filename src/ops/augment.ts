/**
 * Distillation batches assembled on the adapter (`kernels/augment.wgsl`): images gathered by
 * index from a stored set, each with its own zero-filled translation and optional mirror, then
 * mixup inside the batch. The random draws are made on the host ({@link BatchDraws}); the
 * pixels never leave the adapter.
 *
 * @module
 */

import src from "../../kernels/augment.wgsl" with { type: "text" };
import { dispatch, groups, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkRank4 } from "./_checks.ts";

const GATHER = {
  name: "augment.gather",
  code: src,
  uniforms: uniformLayout("Params", [
    ["rows", "u32"],
    ["per", "u32"],
    ["h", "u32"],
    ["w", "u32"],
    ["mix", "u32"],
  ]),
};

/** u32 words per image in {@link BatchDraws.words}. */
const WORDS = 6;

/**
 * The draws of one batch of `n` images: for image `i`, its source image, its translation
 * (`dy` rows down, `dx` columns right, zero fill), whether it is mirrored (after the
 * translation), and, with mixup, its partner `j` and weight `λ`: `λ·a_i + (1 − λ)·a_j`.
 */
export class BatchDraws {
  /** `[n, 6]`: k, dy, dx (i32), flip, j, λ (f32 bits). */
  readonly words: Uint32Array;
  readonly #i32: Int32Array;
  readonly #f32: Float32Array;
  /** Whether {@link setMix} was called for some image since {@link clearMix}. */
  mix = false;

  constructor(readonly n: number) {
    this.words = new Uint32Array(WORDS * n);
    this.#i32 = new Int32Array(this.words.buffer);
    this.#f32 = new Float32Array(this.words.buffer);
  }

  /** Image `i` is source image `k`, moved by (`dy`, `dx`) and mirrored when `flip`. */
  setImage(i: number, k: number, dy = 0, dx = 0, flip = false): void {
    const o = WORDS * i;
    this.words[o] = k;
    this.#i32[o + 1] = dy;
    this.#i32[o + 2] = dx;
    this.words[o + 3] = flip ? 1 : 0;
    this.words[o + 4] = i;
    this.#f32[o + 5] = 1;
  }

  /** Image `i` becomes `λ·a_i + (1 − λ)·a_j`. */
  setMix(i: number, j: number, lambda: number): void {
    const o = WORDS * i;
    this.words[o + 4] = j;
    this.#f32[o + 5] = lambda;
    this.mix = true;
  }

  /** Mixup off for the next batch (set again image by image). */
  clearMix(): void {
    this.mix = false;
  }
}

/**
 * The batch `draws` describes, from `images: [count, C, H, W]` on the adapter → `[n, C, H, W]`.
 * One dispatch; the draws travel in a small `[n, 6]` u32 buffer.
 *
 * @throws {RangeError} when `images` is not 4-D or a draw names an image outside it.
 */
export function gatherAugmented(images: Tensor, draws: BatchDraws): Tensor {
  checkRank4("gatherAugmented", "images", images.shape, true);
  const [count, c, h, w] = images.shape;
  for (let i = 0; i < draws.n; i++) {
    const k = draws.words[WORDS * i];
    const j = draws.words[WORDS * i + 4];
    if (k >= count || j >= draws.n) {
      throw new RangeError(
        `gatherAugmented: image ${i} draws source ${k} of ${count} and partner ${j} of ${draws.n}`,
      );
    }
  }
  const per = c * h * w;
  const out = Tensor.empty([draws.n, c, h, w]);
  if (out.size === 0) return out;
  const t = Tensor.from(draws.words, [draws.n, WORDS]);
  dispatch(
    GATHER,
    [images.buffer, out.buffer, t.buffer],
    { rows: out.size / w, per, h, w, mix: draws.mix ? 1 : 0 },
    groups(out.size / w, 64),
  );
  t.dispose(); // queued work keeps its order; the pool may hand the buffer out again safely
  return out;
}
