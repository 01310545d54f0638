/**
 * The synthesis batch size `"auto"`: the largest batch that the adapter's limits allow, capped
 * where a larger batch does not run faster. Synthesis is batch invariant (every image is
 * optimised on its own, `synthesis.ts`), so the batch size changes the speed only, never the
 * images: `auto` is safe to resolve differently on different machines.
 *
 * @module
 */

import type { Sequential } from "../nn/layers.ts";

/**
 * Most images per batch on a software adapter (llvmpipe, SwiftShader, WARP): beyond a few hundred
 * the CPU cores are busy and throughput stays flat (measured on llvmpipe:
 * `bench/results/synthesis-batch-size.md`), while a stop between batches comes later.
 */
export const SOFTWARE_BATCH_CAP = 256;

/**
 * Most images per batch on a hardware adapter: enough to fill a large GPU with LeNet-sized
 * images (a few tens of thousands of invocations per dispatch) while one iteration's buffers stay
 * well under {@link MEMORY_BUDGET}.
 */
export const HARDWARE_BATCH_CAP = 4096;

/**
 * Bytes of GPU buffers that one synthesis batch may hold at once. WebGPU does not report an
 * adapter's memory, so this is an assumption that any adapter able to run WebGPU compute meets:
 * 1 GiB.
 */
export const MEMORY_BUDGET = 2 ** 30;

/** The limits of an adapter that bound a batch (those of `GpuContext`). */
export interface BatchLimits {
  /** Largest storage-buffer binding, in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer, in bytes. */
  maxBufferSize: number;
  /** True for software adapters. */
  isFallbackAdapter: boolean;
}

/**
 * Bytes one image takes in a synthesis iteration through `teacher`: `largest`, its largest
 * single activation (input included); `total`, an upper estimate of every buffer alive at once
 * (each activation, kept for the backward pass, and its gradient, plus the pixels and Adam's two
 * moments and their gradient: `2·Σ activations + 4·input`, f32).
 */
export function synthesisBytesPerImage(teacher: Sequential): { largest: number; total: number } {
  const input = teacher.inputShape.reduce((a, b) => a * b, 1);
  const sizes = teacher.shapes(1).map((s) => s.shape.reduce((a, b) => a * b, 1));
  const largest = 4 * Math.max(input, ...sizes);
  const total = 4 * (2 * sizes.reduce((a, b) => a + b, 0) + 4 * input);
  return { largest, total };
}

/**
 * The batch size `"auto"` resolves to for `count` images: the most that fit the adapter (half its
 * largest binding and buffer for the largest activation, {@link MEMORY_BUDGET} for all buffers),
 * capped at {@link SOFTWARE_BATCH_CAP} or {@link HARDWARE_BATCH_CAP} and at `count`; the images
 * are then split into equal batches (`ceil(count / batches)` each), so the last is not a sliver.
 *
 * @returns an integer in [1, count] (1 when `count` is 0).
 */
export function autoBatchSize(teacher: Sequential, count: number, limits: BatchLimits): number {
  const { largest, total } = synthesisBytesPerImage(teacher);
  const binding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 2;
  const fits = Math.min(Math.floor(binding / largest), Math.floor(MEMORY_BUDGET / total));
  const cap = limits.isFallbackAdapter ? SOFTWARE_BATCH_CAP : HARDWARE_BATCH_CAP;
  const most = Math.max(1, Math.min(fits, cap, count));
  return Math.max(1, Math.ceil(count / Math.ceil(count / most)));
}

/**
 * The batch size of a synthesis of `count` images: `setting` itself when it is a number (at most
 * `count`), else {@link autoBatchSize}.
 */
export function synthesisBatchSize(
  setting: number | "auto",
  teacher: Sequential,
  count: number,
  limits: BatchLimits,
): number {
  if (setting !== "auto") return Math.max(1, Math.min(setting, count));
  return autoBatchSize(teacher, count, limits);
}
