/**
 * PNG image grids for looking at data and synthesised inputs.
 *
 * @module
 */

import { PNG as PNGModule } from "pngjs";
import { writeFileAtomic } from "./atomic.ts";

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
const PNG = PNGModule as unknown as PngStatic;

/** Options of {@link imageGridPng}. */
export interface GridOptions {
  /** Pixels of separator around every cell (default 2). */
  pad?: number;
  /** Integer upscaling factor of each image pixel (default 1). */
  scale?: number;
  /** Gray level of the separator in [0, 1] (default 0.5). */
  padValue?: number;
}

/**
 * Renders grayscale images in [0, 1] as a grid, encoded as an RGBA PNG.
 *
 * Image `r·cols + c` goes to grid row `r`, column `c`; cells beyond `n` stay separator-coloured,
 * and images beyond `rows·cols` are not drawn. Values are clamped to [0, 1] and rounded to 0..255;
 * NaN pixels are drawn pure red so a diverged generator is visible at a glance.
 *
 * The PNG is `cols·w·scale + (cols+1)·pad` pixels wide and `rows·h·scale + (rows+1)·pad` high.
 *
 * @param images `[n, 1, h, w]` (or `[n, h, w]`), f32.
 * @throws {RangeError} if `images.length !== n·h·w`, a size is not a positive integer (`n` may be
 *   0), `pad` is negative, or `scale` < 1.
 */
export function imageGridPng(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  rows: number,
  cols: number,
  opts: GridOptions = {},
): Uint8Array {
  const { pad = 2, scale = 1, padValue = 0.5 } = opts;
  const positive = { h, w, rows, cols, scale };
  for (const [k, v] of Object.entries(positive)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`imageGridPng: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`imageGridPng: n must be a non-negative integer, got ${n}`);
  }
  if (!Number.isInteger(pad) || pad < 0) {
    throw new RangeError(`imageGridPng: pad must be a non-negative integer, got ${pad}`);
  }
  if (images.length !== n * h * w) {
    throw new RangeError(
      `imageGridPng: images of length ${images.length} are not [${n}, 1, ${h}, ${w}]`,
    );
  }
  const cellW = w * scale;
  const cellH = h * scale;
  const width = cols * cellW + (cols + 1) * pad;
  const height = rows * cellH + (rows + 1) * pad;
  const png = new PNG({ width, height });
  const px = png.data;
  const g = Math.round(Math.min(1, Math.max(0, padValue)) * 255);
  for (let i = 0; i < px.length; i += 4) {
    px[i] = px[i + 1] = px[i + 2] = g;
    px[i + 3] = 255;
  }
  const shown = Math.min(n, rows * cols);
  for (let k = 0; k < shown; k++) {
    const x0 = pad + (k % cols) * (cellW + pad);
    const y0 = pad + Math.floor(k / cols) * (cellH + pad);
    const base = k * h * w;
    for (let y = 0; y < cellH; y++) {
      const srcRow = base + Math.floor(y / scale) * w;
      let o = ((y0 + y) * width + x0) * 4;
      for (let x = 0; x < cellW; x++, o += 4) {
        const v = images[srcRow + Math.floor(x / scale)];
        if (Number.isNaN(v)) {
          px[o] = 255;
          px[o + 1] = px[o + 2] = 0;
        } else {
          px[o] = px[o + 1] = px[o + 2] = Math.round(Math.min(1, Math.max(0, v)) * 255);
        }
      }
    }
  }
  // A copy, so the caller owns a plain Uint8Array rather than a slice of Node's buffer pool.
  return new Uint8Array(PNG.sync.write(png));
}

/**
 * Writes PNG bytes to `path` atomically.
 * @throws file-system errors (missing folder, no permission).
 */
export async function savePng(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, bytes);
}
