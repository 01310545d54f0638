import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { sumCols } from "../src/ops/reduce.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerance: a float64 reference of sums of L values in [-1, 1]; f32 chunked summation errs by
// about sqrt(L)·eps per sum, so atol = 1e-6·sqrt(L), rtol = 1e-6.
const tol = (l: number) => ({ atol: 1e-6 * Math.sqrt(Math.max(l, 1)), rtol: 1e-6 });

function refCols(x: Float32Array, m: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j] += x[i * n + j];
  return out;
}

const SHAPES: [number, number][] = [
  [1, 1],
  [1, 7],
  [7, 1],
  [3, 5],
  [33, 65],
  [256, 120],
  [257, 3], // two passes along M for sumCols
  [5, 70_001], // one pass along M, 70,001 outputs
  [70_001, 5], // three passes along M
  [66_000, 2], // three passes along M for sumCols
];

Deno.test("sumCols matches a float64 reference on odd shapes", async () => {
  await gpuReady;
  let seed = 1;
  for (const [m, n] of SHAPES) {
    const x = randArray(m * n, seed++);
    const t = Tensor.from(x, [m, n]);
    const cols = sumCols(t);
    assertEquals(cols.shape, [n]);
    assertClose(await cols.read(), refCols(x, m, n), { ...tol(m), label: `sumCols [${m},${n}]` });
    for (const u of [t, cols]) u.dispose();
  }
});

Deno.test("sums beyond 65,535 workgroups cover every output", async () => {
  await gpuReady;
  const m = 65_536 * 256 + 3; // one output per invocation: 65,537 workgroups of 256
  const x = randArray(m, 5);
  const t = Tensor.from(x, [1, m]);
  const cols = sumCols(t); // [1, M] -> [M]: every output is its single input
  const r = await cols.read();
  let bad = 0;
  for (let i = 0; i < m; i++) if (r[i] !== x[i]) bad++;
  assertEquals(bad, 0, `${bad} of ${m} outputs wrong`);
  t.dispose();
  cols.dispose();
});

Deno.test("sums over an empty axis are zero; empty results", async () => {
  await gpuReady;
  const x = Tensor.empty([0, 3]);
  const r = sumCols(x);
  assertEquals(Array.from(await r.read()), [0, 0, 0]);
  const e = Tensor.empty([3, 0]);
  const c = sumCols(e);
  assertEquals(c.shape, [0]);
  const y = Tensor.empty([0, 4]);
  const cy = sumCols(y);
  assertEquals(Array.from(await cy.read()), [0, 0, 0, 0]);
  for (const t of [x, r, e, c, y, cy]) t.dispose();
});

Deno.test("sums reject non-matrices with RangeError", async () => {
  await gpuReady;
  const v = Tensor.empty([4]);
  throws(() => sumCols(v), { name: "RangeError", message: /\[M, N\]/ });
  v.dispose();
});
