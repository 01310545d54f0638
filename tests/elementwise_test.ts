import { add, affine, clamp, mul, relu, reluBackward } from "../src/ops/elementwise.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { assertClose, gpuReady, randArray } from "./helpers.ts";

// Tolerance: the float64 reference rounded once to f32 (rtol 1e-6, atol 1e-7).
const tol = { atol: 1e-7, rtol: 1e-6 };

function ref(n: number, f: (i: number) => number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => f(i));
}

for (const n of [1, 7, 256, 1000, 65_537]) {
  Deno.test(`element-wise ops match float64 reference (n = ${n})`, async () => {
    await gpuReady;
    const a = randArray(n, 1);
    const b = randArray(n, 2);
    const [ta, tb] = [Tensor.from(a), Tensor.from(b)];
    const outs = tidy(() => ({
      add: add(ta, tb, 0.5, -2),
      mul: mul(ta, tb),
      affine: affine(ta, 3, 0.25),
      relu: relu(ta),
      reluB: reluBackward(ta, tb),
      clamp: clamp(ta, -0.3, 0.4),
    }));
    assertClose(await outs.add.read(), ref(n, (i) => 0.5 * a[i] - 2 * b[i]), {
      ...tol,
      label: "add",
    });
    assertClose(await outs.mul.read(), ref(n, (i) => a[i] * b[i]), { ...tol, label: "mul" });
    assertClose(await outs.affine.read(), ref(n, (i) => 3 * a[i] + 0.25), {
      ...tol,
      label: "affine",
    });
    assertClose(await outs.relu.read(), ref(n, (i) => Math.max(a[i], 0)), {
      ...tol,
      label: "relu",
    });
    assertClose(await outs.reluB.read(), ref(n, (i) => a[i] > 0 ? b[i] : 0), {
      ...tol,
      label: "reluB",
    });
    assertClose(await outs.clamp.read(), ref(n, (i) => Math.min(0.4, Math.max(-0.3, a[i]))), {
      ...tol,
      label: "clamp",
    });
    for (const t of [ta, tb, ...Object.values(outs)]) t.dispose();
  });
}

Deno.test("element-wise dispatch beyond 65,535 workgroups covers every element", async () => {
  await gpuReady;
  const n = 65_536 * 256 + 3; // 65,537 workgroups of 256
  const a = new Float32Array(n).fill(1);
  const ta = Tensor.from(a);
  const out = affine(ta, 2, 1);
  const r = await out.read();
  let bad = 0;
  for (let i = 0; i < n; i++) if (r[i] !== 3) bad++;
  if (bad) throw new Error(`${bad} elements not written`);
  ta.dispose();
  out.dispose();
});
