/**
 * Mini-batches from an in-memory dataset: seeded shuffles and gathers into contiguous arrays ready
 * for upload to the GPU.
 *
 * @module
 */

import type { Rng } from "../random.ts";
import { type Dataset, IMAGE_SIZE } from "./datasets.ts";

/** Elements of one `[1, 32, 32]` image. */
export const IMAGE_ELEMENTS = IMAGE_SIZE * IMAGE_SIZE;

/**
 * A random permutation of 0..n−1 (Fisher–Yates with `rng`).
 * @throws {RangeError} if `n` is not a non-negative integer below 2^32.
 */
export function shuffledIndices(n: number, rng: Rng): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) {
    throw new RangeError(`shuffledIndices: n must be a non-negative 32-bit integer, got ${n}`);
  }
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  return rng.shuffle(idx);
}

function checkWindow(fn: string, idx: Uint32Array, start: number, count: number): void {
  if (
    !Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 ||
    start + count > idx.length
  ) {
    throw new RangeError(
      `${fn}: window [${start}, ${start}+${count}) is outside the ${idx.length} indices`,
    );
  }
}

/**
 * Copies the examples `idx[start .. start+count)` of `images` (`[N, ...]`, `stride` elements
 * each) into a new `[count, ...]` array.
 *
 * @param images `[N, 1, 32, 32]` by default; any `[N, stride]` layout with `stride` given.
 * @param stride elements per example (default 1·32·32).
 * @throws {RangeError} if the window exceeds `idx`, `images.length` is not a multiple of
 *   `stride`, or an index is ≥ N.
 */
export function gatherImages(
  images: Float32Array,
  idx: Uint32Array,
  start: number,
  count: number,
  stride: number = IMAGE_ELEMENTS,
): Float32Array {
  checkWindow("gatherImages", idx, start, count);
  if (!Number.isInteger(stride) || stride < 1 || images.length % stride !== 0) {
    throw new RangeError(
      `gatherImages: images of length ${images.length} are not [N, ${stride}] (stride ${stride})`,
    );
  }
  const n = images.length / stride;
  const out = new Float32Array(count * stride);
  for (let b = 0; b < count; b++) {
    const i = idx[start + b];
    if (i >= n) throw new RangeError(`gatherImages: index ${i} >= N = ${n}`);
    out.set(images.subarray(i * stride, (i + 1) * stride), b * stride);
  }
  return out;
}

/**
 * The labels `labels[idx[start .. start+count)]` as a new `[count]` array.
 * @throws {RangeError} if the window exceeds `idx` or an index is ≥ `labels.length`.
 */
export function gatherLabels(
  labels: Uint32Array,
  idx: Uint32Array,
  start: number,
  count: number,
): Uint32Array {
  checkWindow("gatherLabels", idx, start, count);
  const out = new Uint32Array(count);
  for (let b = 0; b < count; b++) {
    const i = idx[start + b];
    if (i >= labels.length) {
      throw new RangeError(`gatherLabels: index ${i} >= N = ${labels.length}`);
    }
    out[b] = labels[i];
  }
  return out;
}

/** One mini-batch of an epoch. */
export interface Batch {
  /** `[count, 1, 32, 32]`. */
  images: Float32Array;
  /** `[count]`. */
  labels: Uint32Array;
  /** Examples in this batch (the last one may be smaller unless `dropLast`). */
  count: number;
  /** 0-based batch number within the epoch. */
  index: number;
}

/**
 * The mini-batches of one pass over `ds`. With an `rng` the order is a fresh
 * {@link shuffledIndices} permutation (drawn when iteration starts, so the same generator state
 * gives the same epoch); with `null` the order is 0..N−1 (for evaluation).
 *
 * @param opts.dropLast skip a final batch smaller than `batchSize` (default false).
 * @throws {RangeError} (on the first `next()`, as for any generator) if `batchSize` is not a
 *   positive integer, or `ds.images` is not `[ds.count, 1, 32, 32]` or `ds.labels` not
 *   `[ds.count]`.
 */
export function* epochBatches(
  ds: Dataset,
  batchSize: number,
  rng: Rng | null,
  opts: { dropLast?: boolean } = {},
): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`epochBatches: batchSize must be a positive integer, got ${batchSize}`);
  }
  if (ds.images.length !== ds.count * IMAGE_ELEMENTS || ds.labels.length !== ds.count) {
    throw new RangeError(
      `epochBatches: dataset of count ${ds.count} has images of length ${ds.images.length} ` +
        `(expected [${ds.count}, 1, 32, 32]) and ${ds.labels.length} labels`,
    );
  }
  let idx: Uint32Array;
  if (rng) idx = shuffledIndices(ds.count, rng);
  else {
    idx = new Uint32Array(ds.count);
    for (let i = 0; i < ds.count; i++) idx[i] = i;
  }
  const end = opts.dropLast ? ds.count - (ds.count % batchSize) : ds.count;
  for (let start = 0, index = 0; start < end; start += batchSize, index++) {
    const count = Math.min(batchSize, end - start);
    yield {
      images: gatherImages(ds.images, idx, start, count),
      labels: gatherLabels(ds.labels, idx, start, count),
      count,
      index,
    };
  }
}
