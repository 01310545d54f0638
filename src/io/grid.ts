/**
 * Image grids as raw RGBA pixels, for looking at data and synthesised inputs anywhere: encoded as
 * PNG in Deno ({@link imageGridPng} in `png.ts`), or drawn on a browser canvas with
 * `ctx.putImageData(new ImageData(grid.data, grid.width, grid.height), 0, 0)`. Needs nothing but
 * typed arrays.
 *
 * @module
 */

/** Options of {@link imageGridRgba}. */
export interface GridOptions {
  /** Pixels of separator around every cell (default 2). */
  pad?: number;
  /** Integer upscaling factor of each image pixel (default 1). */
  scale?: number;
  /** Gray level of the separator in [0, 1] (default 0.5). */
  padValue?: number;
}

/** An RGBA raster: `width·height·4` bytes, row-major, 8 bits per channel, opaque. */
export interface RgbaImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `[height, width, 4]` RGBA bytes (what a canvas `ImageData` takes). */
  data: Uint8ClampedArray<ArrayBuffer>;
}

/**
 * Renders grayscale images in [0, 1] as a grid of RGBA pixels.
 *
 * Image `r·cols + c` goes to grid row `r`, column `c`; cells beyond `n` stay separator-coloured,
 * and images beyond `rows·cols` are not drawn. Values are clamped to [0, 1] and rounded to 0..255;
 * NaN pixels are drawn pure red so a diverged generator is visible at a glance.
 *
 * The raster is `cols·w·scale + (cols+1)·pad` pixels wide and `rows·h·scale + (rows+1)·pad` high.
 *
 * @param images `[n, 1, h, w]` (or `[n, h, w]`), f32.
 * @throws {RangeError} if `images.length !== n·h·w`, a size is not a positive integer (`n` may be
 *   0), `pad` is negative, or `scale` < 1.
 */
export function imageGridRgba(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  rows: number,
  cols: number,
  opts: GridOptions = {},
): RgbaImage {
  const { pad = 2, scale = 1, padValue = 0.5 } = opts;
  const positive = { h, w, rows, cols, scale };
  for (const [k, v] of Object.entries(positive)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`imageGrid: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`imageGrid: n must be a non-negative integer, got ${n}`);
  }
  if (!Number.isInteger(pad) || pad < 0) {
    throw new RangeError(`imageGrid: pad must be a non-negative integer, got ${pad}`);
  }
  if (images.length !== n * h * w) {
    throw new RangeError(
      `imageGrid: images of length ${images.length} are not [${n}, 1, ${h}, ${w}]`,
    );
  }
  const cellW = w * scale;
  const cellH = h * scale;
  const width = cols * cellW + (cols + 1) * pad;
  const height = rows * cellH + (rows + 1) * pad;
  const px = new Uint8ClampedArray(width * height * 4);
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
  return { width, height, data: px };
}
