/**
 * Test helpers: seeded random inputs, float64 CPU references and tolerance checks.
 */

import { initGpu } from "../src/gpu/runtime.ts";

/** Initialises the GPU runtime once for a test file. */
export const gpuReady: Promise<unknown> = initGpu();

/** A small seeded generator (mulberry32) for test inputs only. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform values in [lo, hi). */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/**
 * Asserts `|actual - expected| <= atol + rtol·|expected|` element-wise; the message names the
 * worst element.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-4, label = "" } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != ${expected.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const excess = err - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** Asserts `|actual - expected| <= tol`. */
export function assertNear(actual: number, expected: number, tol: number, label = ""): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(`${label}: ${actual} is not within ${tol} of ${expected}`);
  }
}

/** Central differences of a float64 function `f` at `x`, one coordinate at a time (step `h`). */
export function numGrad(
  f: (x: Float64Array) => number,
  x: ArrayLike<number>,
  h = 1e-5,
): Float64Array {
  const xx = Float64Array.from(x);
  const g = new Float64Array(xx.length);
  for (let i = 0; i < xx.length; i++) {
    const x0 = xx[i];
    xx[i] = x0 + h;
    const fp = f(xx);
    xx[i] = x0 - h;
    const fm = f(xx);
    xx[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
