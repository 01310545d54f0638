/**
 * Runs every example as a user would (`deno run -A examples/<name>.ts`) at toy sizes, and checks
 * its exit code and output.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { encodeSafetensors, type HostTensor, loadSafetensors } from "../src/nn/safetensors.ts";
import { Rng } from "../src/random.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUNDLED = `${ROOT}examples/teachers/lenet5-fashion-mnist.safetensors`;

/** Runs an example; returns its exit code, stdout and stderr. */
async function runExample(
  name: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `examples/${name}`, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Shapes of LeNet-5's parameters under PyTorch's `nn.Sequential` module names. */
const TORCH_LENET5: Record<string, number[]> = {
  "features.0.weight": [6, 1, 5, 5],
  "features.0.bias": [6],
  "features.3.weight": [16, 6, 5, 5],
  "features.3.bias": [16],
  "classifier.0.weight": [120, 400],
  "classifier.0.bias": [120],
  "classifier.2.weight": [84, 120],
  "classifier.2.bias": [84],
  "classifier.4.weight": [10, 84],
  "classifier.4.bias": [10],
};

/** Our names for the same tensors. */
const OURS: Record<string, string> = {
  "features.0": "conv1",
  "features.3": "conv2",
  "classifier.0": "fc1",
  "classifier.2": "fc2",
  "classifier.4": "fc3",
};

/**
 * Random LeNet-5 weights (N(0, 2/fan-in), as PyTorch's Kaiming init would give), keyed by PyTorch
 * names, or by ours when `ourNames`.
 */
function lenet5Weights(seed: number, ourNames = false): Record<string, HostTensor> {
  const rng = new Rng(seed);
  const out: Record<string, HostTensor> = {};
  for (const [name, shape] of Object.entries(TORCH_LENET5)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    rng.fillNormal(data, 0, shape.length > 1 ? Math.sqrt(2 / fanIn) : 0.1);
    const [module, param] = [name.slice(0, name.lastIndexOf(".")), name.split(".").at(-1)];
    out[ourNames ? `${OURS[module]}.${param}` : name] = { shape, data };
  }
  return out;
}

Deno.test("examples/train_tiny_model.ts: the loss falls and the toy task is learnt", async () => {
  const r = await runExample("train_tiny_model.ts", [], { STEPS: "60", POINTS: "64" });
  assert.equal(r.code, 0, r.stderr);
  const m = r.stdout.match(/loss ([\d.]+) -> ([\d.]+); accuracy ([\d.]+)/);
  assert(m, r.stdout);
  const [first, last, acc] = m.slice(1).map(Number);
  assert(last < first / 4, `loss ${first} -> ${last}`);
  assert(acc >= 0.9, `accuracy ${acc}`);
});

Deno.test("examples/load_pytorch_teacher.ts maps PyTorch names onto LeNet-5", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfkd-example-" });
  try {
    const torchFile = `${dir}/torch.safetensors`;
    const weights = lenet5Weights(1);
    await Deno.writeFile(torchFile, encodeSafetensors(weights, { format: "pt" }));
    const converted = `${dir}/teacher.safetensors`;
    const r = await runExample("load_pytorch_teacher.ts", [torchFile, converted], {
      TEST_IMAGES: "50",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /loaded lenet5 \(61706 parameters\)/);
    assert.match(r.stdout, /"format":"pt"/);
    // The converted checkpoint holds the same numbers under our names, and names its architecture.
    const saved = await loadSafetensors(converted);
    assert.equal(saved.metadata.arch, "lenet5");
    for (const [name, t] of Object.entries(weights)) {
      const [module, param] = [name.slice(0, name.lastIndexOf(".")), name.split(".").at(-1)];
      const ours = saved.tensors[`${OURS[module]}.${param}`];
      assert.deepEqual(ours.shape, t.shape, name);
      assert.deepEqual(ours.data, t.data, name);
    }

    // A checkpoint missing a tensor fails with a message naming it.
    const partial = { ...weights };
    delete partial["classifier.4.bias"];
    await Deno.writeFile(torchFile, encodeSafetensors(partial));
    const bad = await runExample("load_pytorch_teacher.ts", [torchFile]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /CheckpointError/);
    assert.match(bad.stderr, /fc3\.bias/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("examples/distill_bundled_teacher.ts distils a teacher at toy size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfkd-example-" });
  try {
    // The bundled teacher when it is there; otherwise a random LeNet-5 checkpoint of ours.
    let teacher = BUNDLED;
    try {
      await Deno.stat(BUNDLED);
    } catch {
      teacher = `${dir}/teacher.safetensors`;
      const meta = { arch: "lenet5", dataset: "fashion-mnist" };
      await Deno.writeFile(teacher, encodeSafetensors(lenet5Weights(2, true), meta));
    }
    const r = await runExample("distill_bundled_teacher.ts", [teacher], {
      SAMPLES: "24",
      ITERATIONS: "3",
      EPOCHS: "2",
      TEST_IMAGES: "50",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /synthesis: 24\/24 images/);
    assert.match(r.stderr, /distillation: step \d+\/\d+, loss [\d.]+/);
    const m = r.stdout.match(/distilled on 24 synthetic images; final KD loss ([\d.e+-]+)/);
    assert(m, r.stdout);
    assert(Number.isFinite(Number(m[1])));
    assert.match(r.stdout, /student test accuracy: [\d.]+%|no Fashion-MNIST test set found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README: ≤ 150 lines, and its library snippet is code of a tested example", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assert.ok(readme.trimEnd().split("\n").length <= 150, "README.md is over 150 lines");
  const snippet = readme.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(snippet, "README.md has no ts snippet");
  const example = await Deno.readTextFile(
    new URL("../examples/distill_bundled_teacher.ts", import.meta.url),
  );
  assert.ok(example.includes(snippet), "the README's snippet is not in distill_bundled_teacher.ts");
});
