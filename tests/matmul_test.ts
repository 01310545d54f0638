import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { defaultMatmulStrategy, matmul, type MatmulStrategy } from "../src/ops/matmul.ts";
import { gpuContext } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerance: inputs are uniform in [-1, 1], so each output is a sum of K terms of size <= 1 and
// f32 accumulation error grows like sqrt(K)·eps: atol = 1e-6·sqrt(K), rtol = 1e-5 (a wrong index
// or layout gives errors of order 1).
const tol = (k: number) => ({ atol: 1e-6 * Math.sqrt(Math.max(k, 1)), rtol: 1e-5 });

const STRATEGIES: MatmulStrategy[] = ["register", "tiled"];
const LAYOUTS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];

/** float64 reference of op(A)·op(B) + bias; `a`, `b` in their stored layouts. */
function reference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  bias: Float32Array | null,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) {
        s += a[transA ? t * m + i : i * k + t] * b[transB ? j * k + t : t * n + j];
      }
      c[i * n + j] = s;
    }
  }
  return c;
}

async function check(
  [m, n, k]: [number, number, number],
  transA: boolean,
  transB: boolean,
  withBias: boolean,
  strategy: MatmulStrategy,
  seed: number,
): Promise<void> {
  const a = randArray(m * k, seed);
  const b = randArray(k * n, seed + 1);
  const bias = withBias ? randArray(n, seed + 2) : null;
  const ta = Tensor.from(a, transA ? [k, m] : [m, k]);
  const tb = Tensor.from(b, transB ? [n, k] : [k, n]);
  const tbias = bias ? Tensor.from(bias) : null;
  const c = matmul(ta, tb, { transA, transB, bias: tbias, strategy });
  assertEquals(c.shape, [m, n]);
  const label = `${strategy} ${m}x${n}x${k} transA=${transA} transB=${transB} bias=${withBias}`;
  assertClose(await c.read(), reference(a, b, m, n, k, transA, transB, bias), {
    ...tol(k),
    label,
  });
  for (const t of [ta, tb, tbias, c]) t?.dispose();
}

const SHAPES: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [33, 65, 17], [127, 1, 129]];

for (const strategy of STRATEGIES) {
  Deno.test(`matmul (${strategy}) matches float64 reference in every layout`, async () => {
    await gpuReady;
    let seed = 1;
    for (const [transA, transB] of LAYOUTS) {
      for (const shape of SHAPES) {
        await check(shape, transA, transB, seed % 2 === 0, strategy, seed++);
        await check(shape, transA, transB, seed % 2 === 0, strategy, seed++);
      }
    }
  });

  Deno.test(`matmul (${strategy}) on backward-pass shapes, aligned and not`, async () => {
    await gpuReady;
    let seed = 100;
    // A·Bᵀ (forward of x·Wᵀ), A·B (dx = gy·W), Aᵀ·B (dW = gyᵀ·x) on LeNet-like sizes.
    const shapes = [[64, 48, 40], [20, 10, 84], [10, 84, 20], [130, 66, 9], [200, 300, 260]];
    for (const [m, n, k] of shapes) {
      await check([m, n, k], false, true, true, strategy, seed++);
      await check([m, n, k], false, false, false, strategy, seed++);
      await check([m, n, k], true, false, false, strategy, seed++);
    }
  });
}

Deno.test("matmul with M huge and N tiny (register), and with > 65,535 workgroups (tiled)", async () => {
  await gpuReady;
  await check([20_011, 3, 5], false, false, true, "register", 7);
  await check([20_011, 3, 5], true, true, false, "register", 8);
  // 64 rows per tiled workgroup: 65,540 workgroups, split over y by the runtime. K = 0 keeps
  // this fast on llvmpipe: every output is the bias iff its workgroup ran.
  const m = 64 * 65_540;
  const ta = Tensor.empty([m, 0]);
  const tb = Tensor.empty([0, 1]);
  const bias = Tensor.from([0.25]);
  const c = matmul(ta, tb, { bias, strategy: "tiled" });
  const r = await c.read();
  let bad = 0;
  for (let i = 0; i < m; i++) if (r[i] !== 0.25) bad++;
  assertEquals(bad, 0, `${bad} of ${m} rows wrong`);
  for (const t of [ta, tb, bias, c]) t.dispose();
});

Deno.test("matmul with K = 0 gives the bias (or zeros); empty results", async () => {
  await gpuReady;
  for (const strategy of STRATEGIES) {
    const a = Tensor.empty([3, 0]);
    const b = Tensor.empty([0, 5]);
    const bias = Tensor.from([1, 2, 3, 4, 5]);
    const c = matmul(a, b, { bias, strategy });
    assertEquals(Array.from(await c.read()), [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5]);
    const z = matmul(a, b, { strategy });
    assertEquals(Array.from(await z.read()), new Array(15).fill(0));
    const e = matmul(Tensor.empty([0, 4]), Tensor.empty([4, 2]), { strategy });
    assertEquals(e.shape, [0, 2]);
    for (const t of [a, b, bias, c, z, e]) t.dispose();
  }
});

Deno.test("matmul rejects mismatched shapes with RangeError", async () => {
  await gpuReady;
  const a = Tensor.empty([2, 3]);
  const b = Tensor.empty([4, 5]);
  const v = Tensor.empty([3]);
  const c = Tensor.empty([3, 5]);
  const bias = Tensor.empty([4]);
  throws(() => matmul(a, b), { name: "RangeError", message: /inner dimensions differ/ });
  throws(() => matmul(a, b, { transA: true }), { name: "RangeError", message: /inner dim/ });
  throws(() => matmul(a, v), { name: "RangeError", message: /2-D/ });
  throws(() => matmul(a, c, { bias }), { name: "RangeError", message: /bias/ });
  for (const t of [a, b, v, c, bias]) t.dispose();
});

Deno.test("default matmul strategy follows the adapter", async () => {
  await gpuReady;
  assertEquals(
    defaultMatmulStrategy(),
    gpuContext().isFallbackAdapter ? "register" : "tiled",
  );
});
