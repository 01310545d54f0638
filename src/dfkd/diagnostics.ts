/**
 * What the teacher makes of a finished transfer set: whether the images carry class information
 * a student can learn from. A transfer set the teacher files almost entirely under one class
 * (e.g. images saturated by a dominant activation term) distils into a student near chance, so
 * the run says so before spending the distillation budget on it.
 *
 * @module
 */

import type { SynthesisSettings } from "./settings.ts";

/** Statistics of a transfer set (written to `metrics.json` as `transfer_set_stats`). */
export interface TransferSetStats {
  /** Images per class by the teacher's top-1 prediction, `[classes]`; sums to the set's size. */
  teacher_class_counts: number[];
  /** Share of images whose teacher top-1 equals their soft target's top-1, in [0, 1]. */
  target_agreement: number;
  /** Share of pixels at exactly 0 or 1 (where synthesis clamps them), in [0, 1]. */
  saturated_pixels: number;
  /**
   * Share of images whose top-1 class by an independent model (the judge, which took no part in
   * the synthesis) equals their soft target's top-1, in [0, 1]; null when no judge was given.
   */
  judge_agreement: number | null;
}

/** How a transfer set's soft targets were drawn (written to `metrics.json` as `soft_targets`). */
export interface SoftTargetReport {
  /**
   * `"feature-space"` (sampled from the feature-space model), `"class-balanced"` (each image's
   * class drawn uniformly, its sample redrawn until the teacher's head gives it) or
   * `"teacher-on-noise"` (the noise method: the teacher's predictions on noise images).
   */
  drawn: "feature-space" | "class-balanced" | "teacher-on-noise";
  /** `synthesis.balance` as set: true, false or `"auto"`. */
  balance_setting: boolean | "auto";
  /** With `"auto"`: the pilot's draws, the share of their largest class, and the limit. */
  pilot: { samples: number; largest_class_share: number; limit: number } | null;
  /** Share of the soft targets (their top-1 classes) in their largest class, in [0, 1]. */
  largest_class_share: number;
}

/**
 * The {@link SoftTargetReport} of a run: how the targets were drawn (`balanced` is
 * `synthesis.balance` resolved), the pilot that decided `"auto"`, and the largest class share of
 * `targets: [n, classes]`.
 */
export function softTargetReport(
  method: string,
  setting: boolean | "auto",
  balanced: boolean,
  pilot: { largestShare: number; samples: number; limit: number } | null,
  targets: Float32Array,
  classes: number,
): SoftTargetReport {
  const n = targets.length / classes;
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < n; i++) counts[targetClass(targets, i, classes)]++;
  return {
    drawn: method === "noise" ? "teacher-on-noise" : balanced ? "class-balanced" : "feature-space",
    balance_setting: setting,
    pilot: pilot &&
      { samples: pilot.samples, largest_class_share: pilot.largestShare, limit: pilot.limit },
    largest_class_share: n > 0 ? Math.max(...counts) / n : 0,
  };
}

/** The class of soft target `i` in `[n, classes]` targets: its argmax, the first on ties. */
export function targetClass(targets: Float32Array, i: number, classes: number): number {
  let best = 0;
  for (let k = 1; k < classes; k++) {
    if (targets[i * classes + k] > targets[i * classes + best]) best = k;
  }
  return best;
}

/** A transfer set whose largest teacher class holds more than this share draws a warning. */
export const ONE_CLASS_SHARE = 0.5;

/**
 * Counts the teacher's classes, its agreement with the soft targets and the saturated pixels.
 *
 * @param teacherClasses `[n]` the teacher's top-1 class of each image.
 * @param targets `[n, classes]` soft targets.
 * @param images `[n, ...]` pixels in [0, 1].
 * @throws {RangeError} when the sizes disagree or a class index is out of range.
 */
export function transferSetStats(
  teacherClasses: Uint32Array,
  targets: Float32Array,
  images: Float32Array,
  classes: number,
): TransferSetStats {
  const n = teacherClasses.length;
  if (n === 0 || targets.length !== n * classes || images.length % n !== 0) {
    throw new RangeError(
      `transferSetStats: ${n} predictions need ${n * classes} soft-target values and a ` +
        `multiple of ${n} pixels, got ${targets.length} and ${images.length}`,
    );
  }
  const counts = new Array<number>(classes).fill(0);
  let agree = 0;
  for (let i = 0; i < n; i++) {
    const c = teacherClasses[i];
    if (c >= classes) {
      throw new RangeError(`transferSetStats: class ${c} of image ${i} ≥ ${classes}`);
    }
    counts[c]++;
    if (targetClass(targets, i, classes) === c) agree++;
  }
  let saturated = 0;
  for (const v of images) if (v === 0 || v === 1) saturated++;
  return {
    teacher_class_counts: counts,
    target_agreement: agree / n,
    saturated_pixels: saturated / images.length,
    judge_agreement: null,
  };
}

/**
 * Share of the transfer set whose soft-target class an independent model (the judge) also
 * predicts: how far the images carry their class beyond the teacher that made them (images that
 * only fool their own teacher score near chance).
 *
 * @param judgeClasses `[n]` the judge's top-1 class of each image.
 * @param targets `[n, classes]` soft targets.
 * @returns the agreement in [0, 1].
 * @throws {RangeError} when the sizes disagree.
 */
export function judgeAgreement(
  judgeClasses: Uint32Array,
  targets: Float32Array,
  classes: number,
): number {
  const n = judgeClasses.length;
  if (n === 0 || targets.length !== n * classes) {
    throw new RangeError(
      `judgeAgreement: ${n} predictions need ${n * classes} soft-target values, got ` +
        `${targets.length}`,
    );
  }
  let agree = 0;
  for (let i = 0; i < n; i++) if (targetClass(targets, i, classes) === judgeClasses[i]) agree++;
  return agree / n;
}

/**
 * A warning when the teacher puts more than {@link ONE_CLASS_SHARE} of the transfer set in one
 * class, with the likely cause and what to change; null otherwise.
 *
 * @param classNames names by class index (indices are used where missing).
 */
export function transferSetWarning(
  stats: TransferSetStats,
  cfg: Pick<SynthesisSettings, "method" | "lambdaAct" | "sigma">,
  classNames: readonly string[] = [],
): string | null {
  const counts = stats.teacher_class_counts;
  const n = counts.reduce((a, b) => a + b, 0);
  const top = counts.indexOf(Math.max(...counts));
  const share = counts[top] / n;
  if (share <= ONE_CLASS_SHARE) return null;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const name = classNames[top] ?? String(top);
  let cause: string;
  if (cfg.method === "noise") {
    cause = "unoptimised noise carries no class information (the `noise` baseline)";
  } else if (cfg.lambdaAct > 0 && stats.saturated_pixels > 0.5) {
    cause = `${pct(stats.saturated_pixels)} of the pixels are clamped at 0 or 1: the activation ` +
      `term (λ_a ${cfg.lambdaAct}) outweighs the KL term; try synthesis.lambdaAct 0`;
  } else {
    cause = `the images match ${pct(stats.target_agreement)} of their soft targets; try a ` +
      `larger synthesis.sigma (now ${cfg.sigma}) or more synthesis.iterations`;
  }
  return `warning: the teacher puts ${pct(share)} of the transfer set in one class (${name}), ` +
    `so the student can learn little else: ${cause}`;
}

/**
 * Lays a transfer set out for viewing: one row per class (its soft target's argmax, see
 * {@link targetClass}), the first `cols` images of each class in order, empty cells 0 (black).
 * The result feeds `imageGridRgba(grid, classes·cols, h, w, classes, cols)` (a canvas) or
 * `imageGridPng` with the same arguments (a file).
 *
 * @param images `[n, 1, h, w]` (any `[n, ...]` of `perImage` values) in [0, 1].
 * @param targets `[n, classes]` soft targets (longer arrays: only the first `n` rows are read).
 * @param cols cells per row, an integer ≥ 1 (default 10).
 * @returns `grid` `[classes·cols, ...]` and `filled`, the images placed in each row `[classes]`.
 * @throws {RangeError} when `images` or `targets` do not hold `n` rows, or `cols` < 1.
 */
export function gridByClass(
  images: Float32Array,
  targets: Float32Array,
  n: number,
  classes: number,
  cols = 10,
): { grid: Float32Array; filled: number[] } {
  if (!Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`gridByClass: cols must be an integer >= 1, got ${cols}`);
  }
  if (!Number.isInteger(n) || n < 1 || targets.length < n * classes || images.length % n !== 0) {
    throw new RangeError(
      `gridByClass: ${n} images need ${n * classes} soft-target values and a multiple of ${n} ` +
        `pixels, got ${targets.length} and ${images.length}`,
    );
  }
  const per = images.length / n;
  const grid = new Float32Array(classes * cols * per);
  const filled = new Array<number>(classes).fill(0);
  for (let i = 0; i < n; i++) {
    const best = targetClass(targets, i, classes);
    if (filled[best] >= cols) continue;
    const slot = best * cols + filled[best]++;
    grid.set(images.subarray(i * per, (i + 1) * per), slot * per);
  }
  return { grid, filled };
}
