/**
 * `deno task synth` where a user's data or results were at risk, through the real CLI process at
 * toy size: resuming keeps the run's test set, no output overwrites the teacher, a full disk is a
 * one-line error and the run stays resumable, a corrupt or hand-edited `run.json` is refused, an
 * empty `--out`, a test set of the other dataset, a PyTorch state dict without metadata, paths
 * relative to the folder `deno task` was run from, and two runs on one folder.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import { saveSafetensors } from "../src/nn/safetensors.ts";
import { exists } from "../src/io/atomic.ts";
import { gpuReady } from "./helpers.ts";
import { dataFolder } from "./cli_helpers.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CLI = join(ROOT, "src/cli/synth.ts");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function synth(args: string[], opts: { cwd?: string; task?: boolean } = {}): Deno.Command {
  // `deno task` keeps an INIT_CWD it inherits (this suite may run under `deno task test`).
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return new Deno.Command(Deno.execPath(), {
    args: opts.task ? ["task", "synth", ...args] : ["run", "-A", CLI, ...args],
    cwd: opts.cwd,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

function result(out: Deno.CommandOutput): CliResult {
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function run(args: string[], opts: { cwd?: string; task?: boolean } = {}) {
  return result(await synth(args, opts).output());
}

function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `exit code ${r.code}; stderr:\n${r.stderr}`);
}

/** Exit code 2 and exactly one `error:` line holding every needle; no stack trace. */
function assertUserError(r: CliResult, ...needles: string[]): string {
  assert.equal(r.code, 2, `exit code ${r.code}; stderr:\n${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(lines.length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
  for (const n of needles) {
    assert.ok(lines[0].toLowerCase().includes(n.toLowerCase()), `"${n}" missing in: ${lines[0]}`);
  }
  return lines[0];
}

/** Spawns synth and kills it with SIGKILL as soon as `file` exists: an unfinished run. */
async function killWhen(args: string[], file: string): Promise<void> {
  const child = synth(args).spawn();
  let ended = false;
  const output = child.output().then((o) => (ended = true, o));
  const t0 = Date.now();
  while (!(await exists(file))) {
    if (ended) {
      assert.fail(`the run ended before ${file} appeared:\n${result(await output).stderr}`);
    }
    if (Date.now() - t0 > 60_000) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  await output;
}

const readJson = async (p: string) => JSON.parse(await Deno.readTextFile(p));

const tmp = await Deno.makeTempDir({ prefix: "dfkd-cli-reliability-" });
const teacher = join(tmp, "teacher.safetensors");
const data = join(tmp, "data");
/** A toy run: 2 synthesis batches of 4, 1 distillation epoch. */
const TOY = [
  "--samples",
  "8",
  "--batch-size",
  "4",
  "--iterations",
  "2",
  "--student-epochs",
  "1",
  "--student-batch-size",
  "4",
];
/** Slow enough to be caught mid-run: 16 batches of 4 at 12 iterations. */
const SLOW = [
  "--samples",
  "64",
  "--batch-size",
  "4",
  "--iterations",
  "12",
  "--student-epochs",
  "2",
  "--student-batch-size",
  "4",
];

Deno.test("setup: a teacher and a tiny data folder", async () => {
  await gpuReady;
  const m = buildModel("lenet5", 3);
  await saveModel(teacher, m, { dataset: "fashion-mnist" });
  m.dispose();
  await dataFolder(data, {}, 5, 90);
});

Deno.test("--resume without --data measures accuracy on the run's own test set", async () => {
  const dir = join(tmp, "resume-data");
  await killWhen(
    ["--teacher", teacher, "--data", data, "--out", dir, ...SLOW],
    join(dir, "run.json"),
  );
  assert.equal((await readJson(join(dir, "run.json"))).data, data);
  assert.ok(!(await exists(join(dir, "metrics.json"))));
  const r = await run(["--resume", dir]);
  assertOk(r);
  const m = await readJson(join(dir, "metrics.json"));
  assert.equal(typeof m.student_test_accuracy, "number", "accuracy was measured");
  assert.equal(m.test_set, data);
});

Deno.test("--resume whose recorded test set is gone says to pass --data; --data works", async () => {
  const dir = join(tmp, "resume-data-gone");
  const gone = await dataFolder(join(tmp, "data-gone"), {}, 5, 90);
  await killWhen(
    ["--teacher", teacher, "--data", gone, "--out", dir, ...SLOW],
    join(dir, "run.json"),
  );
  await Deno.remove(gone, { recursive: true });
  assertUserError(await run(["--resume", dir]), gone, "--data");
  assert.ok(!(await exists(join(dir, "metrics.json"))));
  const r = await run(["--resume", dir, "--data", data]);
  assertOk(r);
  assert.equal((await readJson(join(dir, "metrics.json"))).test_set, data);
});

Deno.test("a run.json written before --synth-init existed resumes with the full-range start it ran", async () => {
  const dir = join(tmp, "resume-predates-init");
  await killWhen(
    ["--teacher", teacher, "--data", data, "--out", dir, "--synth-init", "1", ...SLOW],
    join(dir, "run.json"),
  );
  const runFile = await readJson(join(dir, "run.json"));
  assert.equal(runFile.config.synthesis.initMax, 1);
  delete runFile.config.synthesis.initMax;
  await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify(runFile));
  assertOk(await run(["--resume", dir]));
  const settings = (await readJson(join(dir, "metrics.json"))).settings;
  assert.equal(settings.synthesis.initMax, 1, "not today's default");
});

Deno.test("--force never overwrites the teacher: a student used as teacher in its own folder", async () => {
  const dir = join(tmp, "own-folder");
  assertOk(await run(["--teacher", teacher, "--out", dir, ...TOY]));
  const student = join(dir, "student.safetensors");
  const before = await Deno.readFile(student);
  const r = await run(["--teacher", student, "--out", dir, "--force", ...TOY]);
  assertUserError(r, student, "overwrite", "--out");
  assert.deepEqual(await Deno.readFile(student), before, "the teacher file is untouched");
  // Without --force, too, and through a symbolic link to the folder.
  await Deno.symlink(dir, join(tmp, "own-folder-link"));
  assertUserError(
    await run(["--teacher", join(tmp, "own-folder-link", "student.safetensors"), "--out", dir]),
    "overwrite",
  );
});

Deno.test("a full disk is exit 2 naming the file and the folder; the run resumes after", async () => {
  const dir = join(tmp, "full");
  await Deno.mkdir(dir);
  await Deno.symlink("/dev/full", join(dir, "losses.csv")); // every write: ENOSPC
  const r = await run(["--teacher", teacher, "--out", dir, ...TOY]);
  assertUserError(r, "losses.csv", "no space", dir, "--resume");
  assert.ok(!(await exists(join(dir, "metrics.json"))));
  await Deno.remove(join(dir, "losses.csv"));
  assertOk(await run(["--resume", dir]));
  assert.ok(await exists(join(dir, "metrics.json")));
});

Deno.test("a full disk mid-synthesis (a 192 KiB tmpfs) is exit 2; resumed elsewhere it finishes", async (t) => {
  const mnt = join(tmp, "tmpfs");
  await Deno.mkdir(mnt);
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=192k", "tmpfs", mnt],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  if (!mount?.success) {
    console.log("SKIP the tmpfs full-disk case: mounting a tmpfs needs root (/dev/full case ran)");
    return;
  }
  try {
    const dir = join(mnt, "run");
    const r = await run(["--teacher", teacher, "--out", dir, ...SLOW]);
    assertUserError(r, "no space", "--resume");
    const names = await Array.fromAsync(Deno.readDir(dir), (e) => e.name);
    assert.ok(!names.includes("metrics.json"));
    assert.ok(!names.some((n) => n.endsWith(".tmp")), `no temporary file left: ${names}`);
    await t.step("copied to a disk with room, the run resumes and finishes", async () => {
      const moved = join(tmp, "moved");
      const cp = await new Deno.Command("cp", { args: ["-r", dir, moved] }).output();
      assert.ok(cp.success);
      assertOk(await run(["--resume", moved]));
      assert.ok(await exists(join(moved, "metrics.json")));
    });
  } finally {
    await new Deno.Command("umount", { args: [mnt] }).output();
  }
});

Deno.test("a hand-edited or corrupt run.json is refused on resume, naming the setting", async () => {
  const dir = join(tmp, "edited");
  await killWhen(["--teacher", teacher, "--out", dir, ...SLOW], join(dir, "run.json"));
  const original = await Deno.readTextFile(join(dir, "run.json"));
  // deno-lint-ignore no-explicit-any
  type Run = any;
  const cases: [string, (r: Run) => void, string[]][] = [
    ["samples text", (r) => r.config.synthesis.samples = "abc", ["--samples", "whole number"]],
    ["samples negative", (r) => r.config.synthesis.samples = -5, ["--samples", "≥ 1"]],
    ["unknown student", (r) => r.config.distillation.student = "resnet", ["--student", "lenet5"]],
    ["tau zero", (r) => r.config.synthesis.tau = 0, ["--tau", "> 0"]],
    ["flip not boolean", (r) => r.config.distillation.flip = "yes", ["--kd-flip", "true or false"]],
    ["unknown setting", (r) => r.config.synthesis.speed = 3, ["synthesis.speed", "unknown"]],
    ["flat, as before", (r) => r.config = { samples: 8 }, ["earlier version", "--force"]],
    ["unknown dataset", (r) => r.dataset = "cifar10", ["dataset", "fashion-mnist"]],
    ["config missing", (r) => delete r.config, ["no config", "--force"]],
  ];
  for (const [what, edit, needles] of cases) {
    const run_ = JSON.parse(original);
    edit(run_);
    await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify(run_));
    const r = await run(["--resume", dir]);
    assertUserError(r, "run.json", ...needles);
    assert.ok(!(await exists(join(dir, "samples.png"))), `${what}: nothing written`);
  }
  // Not JSON at all: --resume and --out both point to --force, not to each other.
  await Deno.writeTextFile(join(dir, "run.json"), "{ truncated");
  assertUserError(await run(["--resume", dir]), "not valid JSON", "--force");
  assertUserError(
    await run(["--teacher", teacher, "--out", dir, ...TOY]),
    "cannot be read",
    "--force",
  );
  assertOk(await run(["--teacher", teacher, "--out", dir, "--force", ...TOY]));
});

Deno.test("empty paths are refused: --out, --resume, --teacher, --data", async () => {
  const cwd = await Deno.makeTempDir({ dir: tmp });
  for (const flag of ["--out", "--resume", "--teacher", "--data"]) {
    const r = await run(["--teacher", teacher, ...TOY, flag, ""], { cwd });
    assertUserError(r, flag, "empty");
  }
  assert.deepEqual(await Array.fromAsync(Deno.readDir(cwd)), [], "nothing written in the cwd");
});

Deno.test("a test set of the other dataset and a teacher far below its record are warned", async () => {
  const mnistLike = await dataFolder(join(tmp, "mnist-like"), {}, 200, 20); // mean pixel 0.08
  const recorded = join(tmp, "recorded.safetensors");
  const m = buildModel("lenet5", 4);
  await saveModel(recorded, m, { dataset: "fashion-mnist", test_accuracy: "0.9000" });
  m.dispose();
  const dir = join(tmp, "other-dataset");
  const r = await run(["--teacher", recorded, "--data", mnistLike, "--out", dir, ...TOY]);
  assertOk(r);
  assert.match(r.stderr, /looks like mnist, not fashion-mnist/);
  assert.match(r.stderr, /far below the 90\.00% its checkpoint records/);
});

Deno.test("a plain PyTorch state dict (nn.Sequential names, no metadata) runs with or without --arch", async () => {
  const m = buildModel("lenet5", 6);
  const names: Record<string, string> = {
    conv1: "features.0",
    conv2: "features.3",
    fc1: "classifier.0",
    fc2: "classifier.2",
    fc3: "classifier.4",
  };
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const p of m.parameters()) {
    const [layer, kind] = p.name.split(".");
    tensors[`module.${names[layer]}.${kind}`] = {
      shape: [...p.value.shape],
      data: await p.value.read(),
    };
  }
  m.dispose();
  const file = join(tmp, "state_dict.safetensors");
  await saveSafetensors(file, tensors);
  // without --arch the architecture comes from the tensor shapes
  const inferred = join(tmp, "pytorch-inferred");
  assertOk(await run(["--teacher", file, "--data", data, "--out", inferred, ...TOY]));
  assert.equal((await readJson(join(inferred, "metrics.json"))).student_parameters, 35820);
  const dir = join(tmp, "pytorch");
  const r = await run([
    "--teacher",
    file,
    "--arch",
    "lenet5",
    "--dataset",
    "FashionMNIST",
    "--data",
    data,
    "--out",
    dir,
    ...TOY,
  ]);
  assertOk(r);
  const metrics = await readJson(join(dir, "metrics.json"));
  assert.equal(metrics.dataset, "fashion-mnist");
  assert.equal(typeof metrics.student_test_accuracy, "number");
  assertUserError(
    await run(["--teacher", file, "--arch", "lenet5", "--dataset", "cifar", ...TOY]),
    "--dataset",
    "fashion-mnist",
  );
});

Deno.test("metadata spellings such as fmnist are accepted", async () => {
  const file = join(tmp, "fmnist.safetensors");
  const m = buildModel("lenet5", 7);
  await saveModel(file, m, { dataset: "fmnist" });
  m.dispose();
  const dir = join(tmp, "fmnist");
  assertOk(await run(["--teacher", file, "--out", dir, ...TOY]));
  assert.equal((await readJson(join(dir, "metrics.json"))).dataset, "fashion-mnist");
});

Deno.test("deno task from a subfolder: --out and --teacher are relative to that folder", async () => {
  const sub = await Deno.makeTempDir({ dir: join(ROOT, "runs"), prefix: "test-cwd-" }).catch(
    async () => {
      await Deno.mkdir(join(ROOT, "runs"), { recursive: true });
      return Deno.makeTempDir({ dir: join(ROOT, "runs"), prefix: "test-cwd-" });
    },
  );
  try {
    await Deno.copyFile(teacher, join(sub, "t.safetensors"));
    const r = await run(["--teacher", "t.safetensors", "--out", "myrun", ...TOY], {
      cwd: sub,
      task: true,
    });
    assertOk(r);
    assert.ok(await exists(join(sub, "myrun", "metrics.json")), "the run is in the subfolder");
    assert.ok(!(await exists(join(ROOT, "myrun"))), "nothing in the project root");
  } finally {
    await Deno.remove(sub, { recursive: true });
  }
});

Deno.test("two runs on one folder: the second exits 2 naming the first; the first finishes", async () => {
  const dir = join(tmp, "concurrent");
  const first = synth(["--teacher", teacher, "--out", dir, ...SLOW]).spawn();
  const firstDone = first.output();
  const t0 = Date.now();
  while (!(await exists(join(dir, "partial", "synth-00000.safetensors")))) {
    assert.ok(Date.now() - t0 < 60_000, "the first run did not start");
    await new Promise((r) => setTimeout(r, 10));
  }
  const resumed = await run(["--resume", dir]);
  assertUserError(resumed, "being written by another run", `process ${first.pid}`);
  const forced = await run(["--teacher", teacher, "--out", dir, "--force", ...SLOW]);
  assertUserError(forced, "being written by another run");
  const r = result(await firstDone);
  assertOk(r);
  assert.ok(await exists(join(dir, "metrics.json")), "the first run finished unharmed");
  assert.ok(!(await exists(join(dir, "run.lock"))), "the lock is released");
});

Deno.test("a lock left by a killed process does not block --resume", async () => {
  const dir = join(tmp, "stale");
  await killWhen(
    ["--teacher", teacher, "--out", dir, ...SLOW],
    join(dir, "partial", "synth-00000.safetensors"),
  );
  assert.ok(await exists(join(dir, "run.lock")), "kill -9 leaves the lock behind");
  assertOk(await run(["--resume", dir]));
  assert.ok(await exists(join(dir, "metrics.json")));
});

Deno.test("train-teacher checks its --out before training: a folder, an existing file", async () => {
  const cmd = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "src/cli/train_teacher.ts"), "--data", data, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output().then(result);
  const folder = await Deno.makeTempDir({ dir: tmp });
  assertUserError(await cmd(["--out", folder, "--epochs", "1"]), folder, "is a folder");
  const file = join(tmp, "existing.safetensors");
  await Deno.writeTextFile(file, "keep me");
  const r = await cmd(["--out", file, "--epochs", "1"]);
  assertUserError(r, file, "exists", "--force");
  assert.doesNotMatch(r.stderr, /adapter:/, "refused before the GPU and the training");
  assert.equal(await Deno.readTextFile(file), "keep me");
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
