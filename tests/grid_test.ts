/**
 * Tests of the browser-safe image grid: the RGBA raster's size, placement and NaN marking (the PNG
 * writer encodes the same raster: see png_test.ts), and the by-class layout of a transfer set.
 */

import assert from "node:assert/strict";
import { imageGridRgba } from "../src/io/grid.ts";
import { gridByClass } from "../src/dfkd/diagnostics.ts";

Deno.test("imageGridRgba: size, cell placement, scaling, NaN in red", () => {
  // Two 1×2 images in a 1×2 grid, scale 2, pad 1: 2·4 + 3 = 11 wide, 2 + 2 = 4 high.
  const g = imageGridRgba(new Float32Array([0, 1, NaN, 0.5]), 2, 1, 2, 1, 2, {
    pad: 1,
    scale: 2,
    padValue: 0,
  });
  assert.equal(g.width, 11);
  assert.equal(g.height, 4);
  assert.equal(g.data.length, 11 * 4 * 4);
  const at = (x: number, y: number) => [...g.data.subarray((y * 11 + x) * 4, (y * 11 + x) * 4 + 4)];
  assert.deepEqual(at(0, 0), [0, 0, 0, 255]); // separator
  assert.deepEqual(at(1, 1), [0, 0, 0, 255]); // image 0, pixel 0 (0)
  assert.deepEqual(at(4, 2), [255, 255, 255, 255]); // image 0, pixel 1 (1), scaled
  assert.deepEqual(at(6, 1), [255, 0, 0, 255]); // image 1, pixel 0 (NaN)
  assert.deepEqual(at(9, 2), [128, 128, 128, 255]); // image 1, pixel 1 (0.5)
  assert.throws(() => imageGridRgba(new Float32Array(3), 1, 2, 2, 1, 1), RangeError);
});

Deno.test("gridByClass: one row per soft-target argmax, first images first, rows capped", () => {
  // Four 1-pixel images of classes 1, 0, 1, 1 (3 classes), two columns.
  const images = new Float32Array([0.1, 0.2, 0.3, 0.4]);
  const targets = new Float32Array([
    ...[0.1, 0.8, 0.1],
    ...[0.7, 0.2, 0.1],
    ...[0.2, 0.6, 0.2],
    ...[0.3, 0.4, 0.3],
  ]);
  const { grid, filled } = gridByClass(images, targets, 4, 3, 2);
  assert.deepEqual(filled, [1, 2, 0]);
  assert.deepEqual([...grid], [0.2, 0, 0.1, 0.3, 0, 0].map(Math.fround));
  // Only the first n rows of longer targets are read.
  assert.deepEqual(gridByClass(images.subarray(0, 2), targets, 2, 3, 2).filled, [1, 1, 0]);
  assert.throws(() => gridByClass(images, targets, 4, 3, 0), RangeError);
  assert.throws(() => gridByClass(images, targets.subarray(0, 6), 4, 3), RangeError);
});
