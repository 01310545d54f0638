/**
 * Tests of the PNG grid writer: the file is decoded again with pngjs and pixels are checked at
 * known positions (cell placement, padding, scaling, clamping, NaN marking).
 */

import assert, { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { PNG as PNGModule } from "pngjs";
import { imageGridPng, savePng } from "../src/io/png.ts";

interface Decoded {
  width: number;
  height: number;
  data: Uint8Array;
}
const pngjs = PNGModule as unknown as { sync: { read(b: Buffer): Decoded } };
/** Decodes with pngjs (which needs a Node Buffer). */
const decode = (bytes: Uint8Array) => pngjs.sync.read(Buffer.from(bytes));

function rgba(img: Decoded, x: number, y: number): number[] {
  const o = (y * img.width + x) * 4;
  return [...img.data.subarray(o, o + 4)];
}
const gray = (v: number) => [v, v, v, 255];

Deno.test("png: grid places image r*cols+c at row r, column c with padding", async () => {
  const [n, h, w, rows, cols, pad] = [5, 3, 4, 2, 3, 2];
  // Image k is constant k/10 except pixel (1, 2), which is 1.
  const images = new Float32Array(n * h * w);
  for (let k = 0; k < n; k++) {
    images.fill(k / 10, k * h * w, (k + 1) * h * w);
    images[k * h * w + 1 * w + 2] = 1;
  }
  const bytes = await imageGridPng(images, n, h, w, rows, cols, { pad });
  assertEquals([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const img = decode(bytes);
  assertEquals([img.width, img.height], [cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad]);
  for (let k = 0; k < n; k++) {
    const x0 = pad + (k % cols) * (w + pad);
    const y0 = pad + Math.floor(k / cols) * (h + pad);
    assertEquals(rgba(img, x0, y0), gray(Math.round((k / 10) * 255)), `image ${k} corner`);
    assertEquals(rgba(img, x0 + 2, y0 + 1), gray(255), `image ${k} marked pixel`);
    assertEquals(rgba(img, x0 + w - 1, y0 + h - 1), gray(Math.round((k / 10) * 255)));
  }
  assertEquals(rgba(img, 0, 0), gray(128)); // separator (default 0.5)
  assertEquals(rgba(img, pad + w, pad), gray(128)); // between columns
  const emptyCell = [pad + 2 * (w + pad), pad + (h + pad)]; // cell 5 >= n
  assertEquals(rgba(img, emptyCell[0], emptyCell[1]), gray(128));
});

Deno.test("png: scale enlarges pixels; values are clamped; NaN is red", async () => {
  const images = Float32Array.of(-0.5, 2, NaN, 0.25); // one 2x2 image
  const img = decode(await imageGridPng(images, 1, 2, 2, 1, 1, { pad: 0, scale: 3 }));
  assertEquals([img.width, img.height], [6, 6]);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 3; x++) {
      assertEquals(rgba(img, x, y), gray(0)); // -0.5 clamped
      assertEquals(rgba(img, x + 3, y), gray(255)); // 2 clamped
      assertEquals(rgba(img, x, y + 3), [255, 0, 0, 255]); // NaN
      assertEquals(rgba(img, x + 3, y + 3), gray(64)); // 0.25*255 = 63.75
    }
  }
  // More images than cells: only the first rows*cols are drawn.
  const many = await imageGridPng(new Float32Array(9).fill(1), 9, 1, 1, 2, 2, {
    pad: 1,
    padValue: 0,
  });
  const m = decode(many);
  assertEquals([m.width, m.height], [5, 5]);
  assertEquals(rgba(m, 1, 1), gray(255));
  assertEquals(rgba(m, 0, 0), gray(0));
});

Deno.test("png: invalid sizes are RangeErrors; savePng writes atomically", async () => {
  await rejects(() => imageGridPng(new Float32Array(5), 1, 2, 2, 1, 1), RangeError);
  await rejects(() => imageGridPng(new Float32Array(4), 1, 2, 2, 0, 1), RangeError);
  await rejects(() => imageGridPng(new Float32Array(4), 1, 2, 2, 1, 1, { pad: -1 }), RangeError);
  await rejects(() => imageGridPng(new Float32Array(4), 1, 2, 2, 1, 1, { scale: 0 }), RangeError);
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await imageGridPng(new Float32Array(16).fill(0.5), 4, 2, 2, 2, 2);
    await savePng(`${dir}/grid.png`, bytes);
    assertEquals(await Deno.readFile(`${dir}/grid.png`), bytes);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["grid.png"]);
    await assert.rejects(() => savePng(`${dir}/missing/grid.png`, bytes), Deno.errors.NotFound);
    assertEquals([...Deno.readDirSync(dir)].length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
