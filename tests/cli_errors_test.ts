/**
 * Bad inputs to the command-line tools, each through the real CLI process: a one-line error that
 * names the file or flag and says what to do, exit code 2, no stack trace unless --verbose, and no
 * output file that looks finished. Also train-teacher's per-dataset `--input-noise` default, on the
 * same tiny data folders.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS } from "../src/dfkd/settings.ts";
import { saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import {
  loadSafetensors,
  type SafetensorsContents,
  saveSafetensors,
} from "../src/nn/safetensors.ts";
import { exists } from "../src/io/atomic.ts";
import { gpuReady } from "./helpers.ts";
import { assertUserError, cli, type CliResult, dataFolder, idx } from "./cli_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "dfkd-cli-errors-" });
const teacher = join(tmp, "teacher.safetensors");
const tiny = ["--samples", "8", "--iterations", "1", "--batch-size", "8", "--student-epochs", "1"];
let outCounter = 0;
/** A fresh output path that must stay absent when the CLI refuses to run. */
const freshOut = () => join(tmp, `out-${outCounter++}`);

/** Runs synth with a fresh --out and asserts that the folder was not created. */
async function synthRefused(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const out = freshOut();
  const r = await cli("synth", [...args, "--out", out], env);
  assert.equal(await exists(out), false, `${out} must not be created:\n${r.stderr}`);
  return r;
}

Deno.test({
  name: "setup: a LeNet-5 teacher checkpoint",
  fn: async () => {
    await gpuReady;
    const m = buildModel("lenet5", 11);
    await saveModel(teacher, m, { dataset: "fashion-mnist" });
    m.dispose();
  },
});

Deno.test("synth: a missing teacher names the file and the fix", async () => {
  const missing = join(tmp, "missing.safetensors");
  assertUserError(
    await synthRefused(["--teacher", missing, ...tiny]),
    missing,
    "not found",
    "--teacher",
  );
});

Deno.test("synth: an empty, truncated or foreign --teacher file is refused", async () => {
  const bytes = await Deno.readFile(teacher);
  const empty = join(tmp, "empty.safetensors");
  const truncated = join(tmp, "truncated.safetensors");
  const png = join(tmp, "picture.safetensors");
  await Deno.writeFile(empty, new Uint8Array());
  await Deno.writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await Deno.writeFile(png, Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 0, 0, 0]));
  const [a, b, c] = await Promise.all([
    synthRefused(["--teacher", empty, ...tiny]),
    synthRefused(["--teacher", truncated, ...tiny]),
    synthRefused(["--teacher", png, ...tiny]),
  ]);
  assertUserError(a, empty, "empty", "--teacher");
  assertUserError(b, truncated, "truncated", "--teacher");
  assertUserError(c, png, "--teacher");
});

Deno.test("synth: a lenet5-half checkpoint labelled lenet5 names the tensor and shapes", async () => {
  await gpuReady;
  const half = buildModel("lenet5-half", 2);
  const path = join(tmp, "half.safetensors");
  await saveModel(path, half);
  half.dispose();
  const { tensors } = await loadSafetensors(path);
  await saveSafetensors(path, tensors, { arch: "lenet5", dataset: "fashion-mnist" });
  assertUserError(await synthRefused(["--teacher", path, ...tiny]), path, "conv1", "shape");
});

Deno.test("synth: a teacher whose weights hold NaN is refused at load", async () => {
  const { tensors, metadata } = await loadSafetensors(teacher);
  tensors["fc1.weight"].data[3] = NaN;
  const path = join(tmp, "nan.safetensors");
  await saveSafetensors(path, tensors, metadata);
  assertUserError(await synthRefused(["--teacher", path, ...tiny]), path, "fc1.weight", "NaN");
});

Deno.test("synth: bad IDX files in --data name the file and say what to do", async () => {
  const n = 5;
  const good = idx(0x803, [n, 28, 28], new Uint8Array(n * 28 * 28));
  const badMagic = good.slice();
  badMagic.set([0x12, 0x34], 0);
  const truncated = good.subarray(0, good.length - 100);
  const fourLabels = idx(0x801, [4], Uint8Array.from([0, 1, 2, 3]));
  const [magic, trunc, counts] = await Promise.all([
    dataFolder(join(tmp, "data-magic"), { images: badMagic }),
    dataFolder(join(tmp, "data-trunc"), { images: truncated }),
    dataFolder(join(tmp, "data-counts"), { labels: fourLabels }),
  ]);
  const run = (dir: string) => synthRefused(["--teacher", teacher, "--data", dir, ...tiny]);
  const [a, b, c] = await Promise.all([run(magic), run(trunc), run(counts)]);
  assertUserError(a, join(magic, "t10k-images-idx3-ubyte"), "magic");
  assertUserError(b, join(trunc, "t10k-images-idx3-ubyte"), "truncated", "re-download");
  assertUserError(c, "5 images", "4 labels", "re-download");
});

Deno.test("synth: --data without the four IDX files names the flag and the files", async () => {
  const empty = join(tmp, "no-data");
  await Deno.mkdir(empty);
  assertUserError(
    await synthRefused(["--teacher", teacher, "--data", empty, ...tiny]),
    `--data ${empty}`,
    "t10k-images-idx3-ubyte",
  );
});

Deno.test("synth: unknown flags and bad numbers name the flag", async () => {
  const cases: [string[], string[]][] = [
    [["--bogus"], ["--bogus", "--help"]],
    [["--samples", "0"], ["--samples", "≥ 1"]],
    [["--samples", "abc"], ["--samples", "number"]],
    [["--samples", "2.5"], ["--samples", "whole"]],
    [["--tau", "-1"], ["--tau", "> 0"]],
    [["--sigma", "nan"], ["--sigma", "number"]],
    [["--synth-lr", "Infinity"], ["--synth-lr", "number"]],
    [["--method", "magic"], ["--method", "soft-target"]],
    [["--samples"], ["--samples needs a value", String(DEFAULTS.synthesis.samples)]],
    [["--samples", "--tau", "3"], ["--samples needs a value"]],
    [["--iterations", "0"], ["--iterations", "≥ 1"]],
    [["--layer", "conv1"], ["--layer conv1", "fc1, fc2, fc3"]],
  ];
  const results = await Promise.all(
    cases.map(([args]) => synthRefused(["--teacher", teacher, ...args])),
  );
  results.forEach((r, i) => assertUserError(r, ...cases[i][1]));
});

Deno.test("synth: a batch larger than the adapter's buffer limits is refused", async () => {
  const [a, b] = await Promise.all([
    synthRefused(["--teacher", teacher, "--batch-size", "100000"]),
    synthRefused(["--teacher", teacher, "--student-batch-size", "100000"]),
  ]);
  assertUserError(a, "--batch-size 100000", "buffer limits", "at most");
  assertUserError(b, "--student-batch-size 100000", "buffer limits");
});

/** A run folder as a run leaves it: run.json, plus metrics.json when finished. */
async function fakeRun(dir: string, finished: boolean): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const config = { synthesis: { samples: 8, batchSize: 8 }, seed: 0 };
  await Deno.writeTextFile(
    join(dir, "run.json"),
    JSON.stringify({ config, teacher, dataset: "fashion-mnist" }),
  );
  if (finished) await Deno.writeTextFile(join(dir, "metrics.json"), "{}");
}

Deno.test("synth: an --out folder holding a run is refused without --force", async () => {
  const done = join(tmp, "done");
  const unfinished = join(tmp, "unfinished");
  await fakeRun(done, true);
  await fakeRun(unfinished, false);
  const [a, b] = await Promise.all([
    cli("synth", ["--teacher", teacher, "--out", done, ...tiny]),
    cli("synth", ["--teacher", teacher, "--out", unfinished, ...tiny]),
  ]);
  assertUserError(a, done, "finished run", "--force");
  assertUserError(b, unfinished, "unfinished", `--resume ${unfinished}`, "--force");
  assert.deepEqual((await Array.fromAsync(Deno.readDir(done))).map((e) => e.name).sort(), [
    "metrics.json",
    "run.json",
  ]);
});

Deno.test("synth: --resume of a folder without a run, of a finished run, or with new sizes", async () => {
  const nothing = join(tmp, "nothing");
  await Deno.mkdir(nothing);
  const done = join(tmp, "done-resume");
  const unfinished = join(tmp, "unfinished-resume");
  await fakeRun(done, true);
  await fakeRun(unfinished, false);
  const [a, b, c, d, e] = await Promise.all([
    cli("synth", ["--resume", nothing]),
    cli("synth", ["--resume", join(tmp, "does-not-exist")]),
    cli("synth", ["--resume", done]),
    cli("synth", ["--resume", unfinished, "--samples", "99"]),
    cli("synth", ["--resume", unfinished, "--force"]),
  ]);
  assertUserError(a, nothing, "no run to resume");
  assertUserError(b, "does-not-exist", "no run to resume");
  assertUserError(c, done, "finished", "nothing to resume");
  assertUserError(d, "--samples", "cannot change", "used --samples 8");
  assertUserError(e, "--force", "--resume");
});

Deno.test("synth: --resume whose teacher is gone or changed says so", async () => {
  const gone = join(tmp, "teacher-gone");
  const changed = join(tmp, "teacher-changed");
  await Deno.mkdir(gone);
  await Deno.mkdir(changed);
  const config = { synthesis: { samples: 8, batchSize: 8 }, seed: 0 };
  const missing = join(tmp, "deleted.safetensors");
  await Deno.writeTextFile(
    join(gone, "run.json"),
    JSON.stringify({ config, teacher: missing, dataset: "fashion-mnist" }),
  );
  await Deno.writeTextFile(
    join(changed, "run.json"),
    JSON.stringify({ config, teacher, teacher_sha256: "0".repeat(64), dataset: "fashion-mnist" }),
  );
  const [a, b] = await Promise.all([
    cli("synth", ["--resume", gone]),
    cli("synth", ["--resume", changed]),
  ]);
  assertUserError(a, missing, "not found", "restore the teacher");
  assertUserError(b, teacher, "changed since the run started");
});

Deno.test("synth: no WebGPU adapter (DFKD_FORCE_NO_ADAPTER=1) is one line and exit 2", async () => {
  const r = await synthRefused(["--teacher", teacher, ...tiny], { DFKD_FORCE_NO_ADAPTER: "1" });
  assertUserError(r, "No WebGPU adapter", "mesa-vulkan-drivers");
});

Deno.test("synth: --verbose adds the stack trace, still exit 2", async () => {
  const r = await synthRefused(["--teacher", join(tmp, "missing.safetensors"), "--verbose"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: .*not found/);
  assert.match(r.stderr, /^\s+at /m);
});

Deno.test("eval and train-teacher: missing inputs and no adapter are one-line errors", async () => {
  const empty = join(tmp, "no-data-eval");
  await Deno.mkdir(empty);
  const [a, b, c, d] = await Promise.all([
    cli("eval", []),
    cli("eval", ["--model", teacher, "--data", empty]),
    cli("train-teacher".replace("-", "_"), ["--data", empty]),
    cli("eval", ["--model", teacher, "--data", empty], { DFKD_FORCE_NO_ADAPTER: "1" }),
  ]);
  assertUserError(a, "--model");
  assertUserError(b, `--data ${empty}`, "t10k-images-idx3-ubyte");
  assertUserError(c, `--data ${empty}`);
  assertUserError(d, "No WebGPU adapter");
});

Deno.test("train-teacher: --input-noise defaults per dataset (0.35 fashion-mnist, 0.2 mnist)", async () => {
  await gpuReady;
  const data = await dataFolder(join(tmp, "tiny-train"), {}, 20);
  const train = async (name: string, args: string[]) => {
    const out = join(tmp, `${name}.safetensors`);
    const r = await cli("train_teacher", [
      ...["--data", data, "--epochs", "1", "--batch-size", "10", "--out", out],
      ...args,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return await loadSafetensors(out);
  };
  const [fDefault, f035, f02, mDefault, m02, f0] = await Promise.all([
    train("f-default", []),
    train("f-035", ["--input-noise", "0.35"]),
    train("f-02", ["--input-noise", "0.2"]),
    train("m-default", ["--dataset", "mnist"]),
    train("m-02", ["--dataset", "mnist", "--input-noise", "0.2"]),
    train("f-0", ["--input-noise", "0"]),
  ]);
  const weights = (c: SafetensorsContents) => Array.from(c.tensors["fc1.weight"].data);
  assert.equal(fDefault.metadata.input_noise, "0.35");
  assert.equal(mDefault.metadata.input_noise, "0.2");
  assert.equal(f0.metadata.input_noise, "0");
  assert.deepEqual(weights(fDefault), weights(f035), "fashion-mnist default = --input-noise 0.35");
  assert.deepEqual(weights(mDefault), weights(m02), "mnist default = --input-noise 0.2");
  assert.notDeepEqual(weights(f035), weights(f02), "the noise level changes the weights");
  assert.notDeepEqual(weights(f035), weights(f0), "--input-noise 0 turns the noise off");
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
