/**
 * PNG image grids for looking at data and synthesised inputs (Deno and Node: encodes with pngjs;
 * in a browser draw {@link imageGridRgba} on a canvas instead).
 *
 * @module
 */

import { writeFileAtomic } from "./atomic.ts";
import { type GridOptions, imageGridRgba } from "./grid.ts";

/** The part of pngjs' API used here (pngjs ships no type declarations). */
interface PngImage {
  width: number;
  height: number;
  data: Uint8Array;
}
interface PngStatic {
  new (opts: { width: number; height: number }): PngImage;
  sync: { write(png: PngImage): Uint8Array };
}

/** pngjs, loaded on first use so that a browser that never encodes a PNG never loads it. */
let png: Promise<PngStatic> | null = null;
function pngjs(): Promise<PngStatic> {
  png ??= import("pngjs").then((m) => m.PNG as unknown as PngStatic);
  return png;
}

export type { GridOptions } from "./grid.ts";

/**
 * Renders grayscale images in [0, 1] as a grid, encoded as an RGBA PNG: the raster of
 * {@link imageGridRgba} (same layout, clamping and red NaN pixels).
 *
 * The PNG is `cols·w·scale + (cols+1)·pad` pixels wide and `rows·h·scale + (rows+1)·pad` high.
 *
 * @param images `[n, 1, h, w]` (or `[n, h, w]`), f32.
 * @throws {RangeError} if `images.length !== n·h·w`, a size is not a positive integer (`n` may be
 *   0), `pad` is negative, or `scale` < 1.
 */
export async function imageGridPng(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  rows: number,
  cols: number,
  opts: GridOptions = {},
): Promise<Uint8Array> {
  const grid = imageGridRgba(images, n, h, w, rows, cols, opts);
  const PNG = await pngjs();
  const image = new PNG({ width: grid.width, height: grid.height });
  image.data.set(grid.data);
  // A copy, so the caller owns a plain Uint8Array rather than a slice of Node's buffer pool.
  return new Uint8Array(PNG.sync.write(image));
}

/**
 * Writes PNG bytes to `path` atomically.
 * @throws file-system errors (missing folder, no permission).
 */
export async function savePng(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, bytes);
}
