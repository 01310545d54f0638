/**
 * Loads a LeNet-5 teacher trained elsewhere — a PyTorch `state_dict` saved with
 * `safetensors.torch.save_file(model.state_dict(), "teacher.safetensors")` — maps its module names
 * onto ours, checks it on the real test set when one is installed, and saves it in this package's
 * checkpoint format (which records the architecture), ready for `deno task synth --teacher`.
 *
 * The PyTorch model this mapping expects (inputs 1×32×32: 28×28 images zero-padded by 2):
 *
 * ```python
 * features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
 *                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
 * classifier = nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
 *                            nn.Linear(84, 10))
 * ```
 *
 * PyTorch's `Conv2d` weight `[out, in, kH, kW]`, `Linear` weight `[out, in]` and its flattening of
 * `[N, 16, 5, 5]` in C, H, W order are the layouts used here, so no tensor needs transposing.
 *
 * Usage: `deno run -A examples/load_pytorch_teacher.ts teacher.safetensors [out.safetensors]`
 * (`TEST_IMAGES` in the environment limits the test images evaluated, default 10000).
 *
 * @module
 */

import * as dfkd from "../mod.ts";

const [input, output] = Deno.args;
if (!input) {
  console.error("usage: load_pytorch_teacher.ts teacher.safetensors [out.safetensors]");
  Deno.exit(2);
}

// PyTorch module → our layer name (see buildModel); each has a `.weight` and a `.bias`.
const modules: Record<string, string> = {
  "features.0": "conv1",
  "features.3": "conv2",
  "classifier.0": "fc1",
  "classifier.2": "fc2",
  "classifier.4": "fc3",
};
const nameMap: Record<string, string> = {};
for (const [torch, ours] of Object.entries(modules)) {
  for (const p of ["weight", "bias"]) nameMap[`${torch}.${p}`] = `${ours}.${p}`;
}

await dfkd.initGpu();
const { model, metadata } = await dfkd.loadModel(input, { arch: "lenet5", nameMap });
console.log(`loaded ${model.arch} (${model.parameterCount()} parameters) from ${input}`);
console.log(`metadata: ${JSON.stringify(metadata)}`);

const dir = dfkd.findDataDir("fashion-mnist");
if (dir) {
  const limit = Number(Deno.env.get("TEST_IMAGES") ?? 10000);
  const acc = await dfkd.evaluate(model, await dfkd.loadSplit(dir, "test", { limit }));
  console.log(`Fashion-MNIST test accuracy: ${(acc * 100).toFixed(2)}%`);
}
if (output) {
  await dfkd.saveModel(output, model, { dataset: "fashion-mnist", source: input });
  console.log(`saved ${output}; distil it with: deno task synth --teacher ${output}`);
}
model.dispose();
