/**
 * Batch invariance of synthesis: an image's result does not depend on the batch it is in or on
 * the batch size (per-image generators, per-image jitter and flips, a loss summed over images,
 * kernels whose per-image rows do not depend on N). Checked byte for byte on the transfer set,
 * and on the teacher's forward and input-gradient passes that synthesis runs.
 */

import assert from "node:assert/strict";
import { synthesizeTransferSet } from "../src/api.ts";
import { klDivLoss } from "../src/autograd/functions.ts";
import { Tape } from "../src/autograd/tape.ts";
import { autoBatchSize, synthesisBatchSize } from "../src/dfkd/batch_size.ts";
import { gpuContext } from "../src/gpu/runtime.ts";
import { matmul, type MatmulStrategy } from "../src/ops/matmul.ts";
import { buildModel } from "../src/nn/models.ts";
import { Tensor, tidy } from "../src/tensor.ts";
import { gpuReady, randArray } from "./helpers.ts";

await gpuReady;

Deno.test("the teacher's logits and input gradient of each image do not depend on N", async () => {
  const teacher = buildModel("lenet5", 9);
  teacher.setTrainable(false);
  const per = 32 * 32;
  const all = randArray(120 * per, 3, 0, 1);
  const targets = randArray(120 * 10, 4, 0, 0.2);
  const pass = async (first: number, n: number) => {
    const x = Tensor.from(all.slice(first * per, (first + n) * per), [n, 1, 32, 32]);
    x.requiresGrad = true;
    const p = Tensor.from(targets.slice(first * 10, (first + n) * 10), [n, 10]);
    const [y, g] = tidy(() => {
      const tape = new Tape();
      let logits: Tensor | null = null;
      const loss = tape.run(() => {
        logits = teacher.run(x).y;
        return klDivLoss(p, logits, 20, "sum");
      });
      return [logits!, tape.backward(loss, [x]).get(x)!];
    });
    const out = [await y.read(), await g.read()];
    for (const t of [x, p, y, g]) t.dispose();
    return out;
  };
  const [y120, g120] = await pass(0, 120);
  for (const [first, n] of [[0, 1], [0, 7], [40, 40], [113, 7], [5, 64]]) {
    const [y, g] = await pass(first, n);
    assert.deepEqual(y, y120.slice(first * 10, (first + n) * 10), `logits, ${n} from ${first}`);
    assert.deepEqual(g, g120.slice(first * per, (first + n) * per), `gradient, ${n} from ${first}`);
  }
  teacher.dispose();
});

Deno.test("both matmul kernels compute each row of x·Wᵀ and gy·W the same at any N", async () => {
  // The register kernel runs on software adapters, the tiled one on GPUs: both are checked here.
  const w = Tensor.from(randArray(84 * 120, 5), [84, 120]);
  const x = randArray(120 * 120, 6);
  for (const strategy of ["register", "tiled"] as MatmulStrategy[]) {
    for (const transB of [true, false]) {
      const k = transB ? 120 : 84;
      const rows = async (first: number, n: number) => {
        const a = Tensor.from(x.slice(first * k, (first + n) * k), [n, k]);
        const y = matmul(a, w, { transB, strategy });
        const out = await y.read();
        a.dispose();
        y.dispose();
        return out;
      };
      const all = await rows(0, 120);
      const m = transB ? 84 : 120;
      for (const [first, n] of [[0, 1], [3, 7], [40, 80], [64, 56]]) {
        const label = `${strategy}, transB ${transB}: ${n} rows from ${first}`;
        assert.deepEqual(await rows(first, n), all.slice(first * m, (first + n) * m), label);
      }
    }
  }
  w.dispose();
});

for (
  const extra of [
    { jitter: 2, flip: true, lambdaAct: 0.05, actNorm: "sample-l1" as const, lambdaTv: 0.05 },
    { smooth: 1, lambdaAct: 0.5, jitter: 1, lambdaTv: 0.05 },
    { method: "softmax-space" as const, flip: true, balance: true },
    { method: "noise" as const },
  ]
) {
  Deno.test(`batch sizes 40, 120, 7 and auto give one transfer set (${JSON.stringify(extra)})`, async () => {
    const teacher = buildModel("lenet5", 11);
    try {
      const opts = { samples: 120, iterations: 3, seed: 4, ...extra };
      const ref = await synthesizeTransferSet(teacher, { ...opts, batchSize: 120 });
      for (const batchSize of [40, 7, "auto"] as const) {
        const other = await synthesizeTransferSet(teacher, { ...opts, batchSize });
        assert.deepEqual(other.images, ref.images, `images at batch size ${batchSize}`);
        assert.deepEqual(other.softTargets, ref.softTargets, `targets at batch size ${batchSize}`);
      }
    } finally {
      teacher.dispose();
    }
  });
}

Deno.test("auto: the adapter's cap, equal batches, at most the images, within the limits", () => {
  const teacher = buildModel("lenet5", 1);
  const soft = {
    maxStorageBufferBindingSize: 2 ** 27,
    maxBufferSize: 2 ** 28,
    isFallbackAdapter: true,
  };
  assert.equal(autoBatchSize(teacher, 8000, soft), 250); // 32 batches of 250 (cap 256)
  assert.equal(autoBatchSize(teacher, 120, soft), 120);
  assert.equal(autoBatchSize(teacher, 257, soft), 129);
  const hard = { ...soft, isFallbackAdapter: false, maxStorageBufferBindingSize: 2 ** 31 };
  assert.equal(autoBatchSize(teacher, 48000, hard), 4000); // 12 batches (cap 4096)
  // A small binding limit bounds it: conv1's output is 6·28·28·4 bytes per image.
  const tiny = { ...hard, maxStorageBufferBindingSize: 2 * 6 * 28 * 28 * 4 * 10 };
  assert.equal(autoBatchSize(teacher, 48000, tiny), 10);
  assert.equal(synthesisBatchSize(50, teacher, 20, soft), 20);
  const auto = synthesisBatchSize("auto", teacher, 100000, gpuContext());
  assert.ok(auto >= 1 && auto <= 4096, `auto ${auto}`);
  teacher.dispose();
});
