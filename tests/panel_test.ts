/**
 * The whole pipeline through `deno task synth` at toy size on teachers of the panel in
 * `bench/teachers/` (LeNet-5s trained in PyTorch with recipes other than `train-teacher`'s): with
 * an independent judge, and as a plain PyTorch state_dict whose architecture and dataset the tool
 * infers.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findDataDir } from "../src/data/datasets.ts";
import type { RunMetrics } from "../src/dfkd/run.ts";
import { encodeSafetensors, loadSafetensors } from "../src/nn/safetensors.ts";
import { cli, dataFolder } from "./cli_helpers.ts";

const PANEL = (name: string) =>
  fileURLToPath(new URL(`../bench/teachers/${name}.safetensors`, import.meta.url));
const MNIST = fileURLToPath(new URL("../../shared/data/mnist", import.meta.url));
const hasMnist = findDataDir("mnist", MNIST) !== null;
if (!hasMnist) {
  console.warn(
    `panel_test: SKIPPING the plain-state_dict run on real MNIST: no MNIST IDX files in ${MNIST}. ` +
      `To run it, put the four MNIST files (train-/t10k-images-idx3-ubyte, ` +
      `train-/t10k-labels-idx1-ubyte, optionally .gz) in ../shared/data/mnist beside the repository.`,
  );
}
const TOY = ["--samples", "40", "--batch-size", "20", "--iterations", "3", "--student-epochs", "1"];

async function metrics(dir: string): Promise<RunMetrics> {
  return JSON.parse(await Deno.readTextFile(join(dir, "metrics.json")));
}

Deno.test("a panel teacher distils through the CLI with a judge of the same dataset", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "dfkd-panel-" });
  try {
    const data = await dataFolder(join(tmp, "data"));
    const out = join(tmp, "run");
    const r = await cli("synth", [
      "--teacher",
      PANEL("mnist-adam"),
      "--judge",
      PANEL("mnist-cosine-shift"),
      "--data",
      data,
      "--out",
      out,
      ...TOY,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const m = await metrics(out);
    assert.equal(m.dataset, "mnist"); // from the checkpoint's metadata
    assert.equal(m.settings.distillation.flip, false); // the MNIST rule
    const judged = m.transfer_set_stats.judge_agreement;
    assert.ok(judged !== null && judged >= 0 && judged <= 1, String(judged));
    assert.match(r.stdout, new RegExp(`the judge with ${(judged * 100).toFixed(1)}%`));
    const bad = await cli("synth", [
      "--teacher",
      PANEL("mnist-adam"),
      "--judge",
      join(tmp, "missing.safetensors"),
      "--data",
      data,
      "--out",
      join(tmp, "run2"),
      ...TOY,
    ]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--judge/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test({
  name:
    "a plain PyTorch state_dict of the panel: architecture from its shapes, dataset from --data",
  ignore: !hasMnist,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "dfkd-panel-plain-" });
    try {
      const { tensors } = await loadSafetensors(PANEL("mnist-adam"));
      const plain = join(tmp, "state_dict.safetensors");
      await Deno.writeFile(plain, encodeSafetensors(tensors, {}));
      const out = join(tmp, "run");
      const r = await cli("synth", ["--teacher", plain, "--data", MNIST, "--out", out, ...TOY]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /names no dataset; the test set in .* looks like mnist/);
      const m = await metrics(out);
      assert.equal(m.dataset, "mnist");
      assert.equal(m.settings.distillation.flip, false);
      assert.ok(m.teacher_test_accuracy! >= 0.99, String(m.teacher_test_accuracy));
      assert.ok(m.student_test_accuracy! > 0 && m.student_test_accuracy! <= 1);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
