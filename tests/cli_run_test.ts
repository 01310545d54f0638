/**
 * Whole runs of `deno task synth` through the real CLI process at toy size: the output folder's
 * contents, interruption by SIGINT/SIGTERM/SIGKILL and `--resume` (a resumed run's transfer set
 * and student are byte-identical to an uninterrupted run's), numerical faults, a simulated device
 * loss (in-process) and `--help`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findDataDir } from "../src/data/datasets.ts";
import { DEFAULTS, resolveConfig } from "../src/dfkd/settings.ts";
import { asCliError } from "../src/cli/synth_flags.ts";
import { DeviceLostError, runDfkd } from "../src/dfkd/run.ts";
import { isUserError } from "../src/cli/main.ts";
import { FLAGS } from "../src/cli/synth.ts";
import { loadModel, saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import { loadSafetensors } from "../src/nn/safetensors.ts";
import { exists } from "../src/io/atomic.ts";
import { gpuReady } from "./helpers.ts";

const CLI = (name: string) => fileURLToPath(new URL(`../src/cli/${name}.ts`, import.meta.url));
const DATA = fileURLToPath(new URL("../../shared/data/fashion-mnist", import.meta.url));
const hasData = findDataDir("fashion-mnist", DATA) !== null;
if (!hasData) {
  console.warn(
    `cli_run_test: SKIPPING the whole-pipeline test with real accuracy: no Fashion-MNIST IDX ` +
      `files in ${DATA}. To run it, put train-images-idx3-ubyte, train-labels-idx1-ubyte, ` +
      `t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz) in ` +
      `../shared/data/fashion-mnist beside the repository.`,
  );
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function command(tool: string, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI(tool), ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

function result(out: Deno.CommandOutput): CliResult {
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function cli(tool: string, args: string[]): Promise<CliResult> {
  return result(await command(tool, args).output());
}

function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `exit code ${r.code}; stderr:\n${r.stderr}`);
}

/** The one `error:` line of a failed run (and no stack trace). */
function errorLine(r: CliResult): string {
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(lines.length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  return lines[0];
}

/**
 * Spawns synth, waits until `file` appears (polling), sends `signal`, and returns the result.
 * Fails if the run ends before the file appears.
 */
async function interruptWhen(
  args: string[],
  file: string,
  signal: Deno.Signal,
): Promise<CliResult> {
  const child = command("synth", args).spawn();
  let ended = false;
  const output = child.output().then((o) => {
    ended = true;
    return o;
  });
  const t0 = Date.now();
  while (!(await exists(file))) {
    if (ended) {
      const r = result(await output);
      assert.fail(`the run ended (code ${r.code}) before ${file} appeared:\n${r.stderr}`);
    }
    if (Date.now() - t0 > 60_000) {
      child.kill("SIGKILL");
      await output;
      assert.fail(`${file} did not appear within 60 s`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill(signal);
  return result(await output);
}

/** Names in `dir` (sorted), or [] when it does not exist. */
async function list(dir: string): Promise<string[]> {
  if (!(await exists(dir))) return [];
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

/** The files of an unfinished run must not look finished. */
async function assertUnfinished(dir: string, allowed: string[] = []): Promise<void> {
  const names = await list(dir);
  for (
    const f of ["metrics.json", "transfer-set.safetensors", "student.safetensors", "samples.png"]
  ) {
    if (!allowed.includes(f)) assert.ok(!names.includes(f), `${dir} must not hold ${f}`);
  }
  for (const n of [...names, ...await list(join(dir, "partial"))]) {
    assert.doesNotMatch(n, /\.tmp$/, `leftover temporary file ${n}`);
  }
}

const synthFiles = async (dir: string) =>
  (await list(join(dir, "partial"))).filter((n) => n.startsWith("synth-"));

const tmp = await Deno.makeTempDir({ prefix: "dfkd-cli-run-" });
const teacher = join(tmp, "teacher.safetensors");
/**
 * 8 synthesis batches of 4 and 6 distillation epochs of 8 steps: slow enough to interrupt. The
 * adversarial steps are on so that resuming is checked with them too.
 */
const RUN = [
  "--teacher",
  teacher,
  "--samples",
  "32",
  "--batch-size",
  "4",
  "--iterations",
  "16",
  "--student-epochs",
  "6",
  "--student-batch-size",
  "4",
  "--log-every",
  "4",
  "--kd-adv-steps",
  "1",
  "--seed",
  "5",
];
const reference = join(tmp, "reference");

Deno.test("setup: teacher checkpoint and an uninterrupted reference run", async () => {
  await gpuReady;
  const m = buildModel("lenet5", 1);
  await saveModel(teacher, m, { dataset: "fashion-mnist" });
  m.dispose();
  const r = await cli("synth", [...RUN, "--out", reference]);
  assertOk(r);
  assert.deepEqual(await list(reference), [
    "losses.csv",
    "metrics.json",
    "run.json",
    "samples.png",
    "student.safetensors",
    "transfer-set.safetensors",
  ]);
  // No --data: accuracy is null unless a test set is installed in a standard place.
  const metrics = JSON.parse(await Deno.readTextFile(join(reference, "metrics.json")));
  if (findDataDir("fashion-mnist") === null) {
    assert.equal(metrics.teacher_test_accuracy, null);
    assert.equal(metrics.student_test_accuracy, null);
    assert.match(r.stdout, /student test accuracy\s+not measured/);
  }
});

Deno.test("SIGINT during synthesis, a NaN on resume, then resume: same bytes as uninterrupted", async () => {
  const dir = join(tmp, "sigint");
  const first = join(dir, "partial", "synth-00000.safetensors");
  const r1 = await interruptWhen([...RUN, "--out", dir], first, "SIGINT");
  assert.equal(r1.code, 130, r1.stderr);
  assert.match(r1.stderr, new RegExp(`continue with --resume ${dir}`));
  await assertUnfinished(dir);
  const k = (await synthFiles(dir)).length;
  assert.ok(k >= 1 && k < 8, `${k} finished batches`);

  // λ_a so large that the activation term overflows at the first iteration, whatever the images:
  // the run stops at the next batch, keeping k batches.
  const overflow = ["--lambda-act", "1e38", "--act-norm", "sample-l1", "--log-every", "1"];
  const r2 = await cli("synth", ["--resume", dir, ...overflow]);
  assert.equal(r2.code, 2, r2.stderr);
  const line = errorLine(r2);
  for (
    const s of [
      "synthesis loss became",
      "iteration 1",
      `batch ${k + 1} of 8`,
      "KL at τ 20 + 1e+38·L_a (sample-l1)",
      `${k} finished batch(es)`,
      `--resume ${dir}`,
      "--synth-lr",
      "--tau",
    ]
  ) assert.ok(line.includes(s), `"${s}" missing in: ${line}`);
  await assertUnfinished(dir);
  assert.equal((await synthFiles(dir)).length, k);

  const restore = ["--lambda-act", "0", "--act-norm", "element-mean", "--log-every", "4"];
  const r3 = await cli("synth", ["--resume", dir, ...restore]);
  assertOk(r3);
  assert.match(r3.stderr, /changed: --lambda-act 1e\+38 → 0/);
  for (const f of ["transfer-set.safetensors", "student.safetensors"]) {
    assert.deepEqual(
      await Deno.readFile(join(dir, f)),
      await Deno.readFile(join(reference, f)),
      `${f} differs from the uninterrupted run's`,
    );
  }
  assert.equal(await exists(join(dir, "partial")), false);
});

Deno.test("kill -9 mid-synthesis, SIGTERM mid-distillation, resume: finishes, same bytes", async () => {
  const dir = join(tmp, "kill");
  const second = join(dir, "partial", "synth-00001.safetensors");
  const r1 = await interruptWhen([...RUN, "--out", dir], second, "SIGKILL");
  assert.notEqual(r1.code, 0);
  await assertUnfinished(dir);
  assert.ok((await synthFiles(dir)).length >= 2);

  const epoch = join(dir, "partial", "student.safetensors");
  const r2 = await interruptWhen(["--resume", dir], epoch, "SIGTERM");
  assert.equal(r2.code, 143, r2.stderr);
  assert.match(r2.stderr, /interrupted: .*--resume/);
  // Synthesis had finished: its outputs are complete; the student is not.
  await assertUnfinished(dir, ["transfer-set.safetensors", "samples.png"]);
  assert.ok(await exists(join(dir, "transfer-set.safetensors")));

  const r3 = await cli("synth", ["--resume", dir]);
  assertOk(r3);
  assert.match(r3.stderr, /distillation resumed after epoch [1-5]/);
  for (const f of ["transfer-set.safetensors", "student.safetensors"]) {
    assert.deepEqual(
      await Deno.readFile(join(dir, f)),
      await Deno.readFile(join(reference, f)),
      `${f} differs from the uninterrupted run's`,
    );
  }
  const names = await list(dir);
  assert.ok(names.includes("metrics.json") && !names.includes("partial"), names.join());
});

Deno.test("a NaN in distillation keeps the transfer set; resume with a lower lr finishes", async () => {
  const dir = join(tmp, "nan-kd");
  const args = ["--teacher", teacher, "--samples", "16", "--batch-size", "8", "--iterations", "2"];
  const r1 = await cli("synth", [
    ...args,
    "--student-epochs",
    "3",
    "--student-batch-size",
    "4",
    "--student-lr",
    "1e30",
    "--out",
    dir,
  ]);
  assert.equal(r1.code, 2, r1.stderr);
  const line = errorLine(r1);
  for (const s of ["distillation loss became", "epoch", "--student-lr", `--resume ${dir}`]) {
    assert.ok(line.includes(s), `"${s}" missing in: ${line}`);
  }
  await assertUnfinished(dir, ["transfer-set.safetensors", "samples.png"]);
  assert.ok(await exists(join(dir, "transfer-set.safetensors")));
  const r2 = await cli("synth", ["--resume", dir, "--student-lr", "0.002"]);
  assertOk(r2);
  assert.ok(await exists(join(dir, "metrics.json")));
});

Deno.test("a device loss stops the run after saving finished work; resume finishes", async () => {
  await gpuReady;
  const { model } = await loadModel(teacher);
  const dir = join(tmp, "device-lost");
  const cfg = resolveConfig({
    overrides: {
      synthesis: { samples: 12, batchSize: 4, iterations: 2 },
      distillation: { epochs: 3, batchSize: 4 },
    },
  });
  const ctx = {
    teacher: model,
    teacherName: teacher,
    dataset: "fashion-mnist",
    testSet: null,
    testSetDir: null,
    adapter: "test",
  };
  try {
    const lostAfter = (file: string) => () => {
      try {
        Deno.statSync(join(dir, "partial", file));
        return "simulated loss";
      } catch {
        return null;
      }
    };
    await assert.rejects(
      runDfkd(cfg, dir, { ...ctx, deviceLost: lostAfter("synth-00000.safetensors") }),
      (e: Error) => {
        assert.ok(e instanceof DeviceLostError && isUserError(e));
        assert.equal(e.resumeDir, dir);
        const shown = (asCliError(e) as Error).message; // as the CLI prints it
        assert.match(shown, /lost during synthesis \(simulated loss\).*--resume/);
        return true;
      },
    );
    assert.deepEqual(await synthFiles(dir), ["synth-00000.safetensors"]);
    await assertUnfinished(dir);
    await assert.rejects(
      runDfkd(cfg, dir, { ...ctx, deviceLost: lostAfter("student.safetensors") }),
      /lost during distillation/,
    );
    await assertUnfinished(dir, ["transfer-set.safetensors", "samples.png"]);
    const done = await runDfkd(cfg, dir, { ...ctx, deviceLost: () => null });
    assert.equal(done.stopped, false);
    assert.ok(await exists(join(dir, "metrics.json")));
  } finally {
    model.dispose();
  }
});

Deno.test({
  name: "whole pipeline with the real test set: every output file, --force keeps other files",
  ignore: !hasData,
  fn: async () => {
    const dir = join(tmp, "pipeline");
    // A finished run is there already, beside a file that is not the run's.
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "metrics.json"), "{}");
    await Deno.writeTextFile(join(dir, "run.json"), "{}");
    await Deno.writeTextFile(join(dir, "notes.txt"), "mine");
    const n = 24;
    const r = await cli("synth", [
      "--teacher",
      teacher,
      "--data",
      DATA,
      "--samples",
      String(n),
      "--iterations",
      "3",
      "--batch-size",
      "8",
      "--student-epochs",
      "2",
      "--balance",
      "auto",
      "--out",
      dir,
      "--force",
    ]);
    assertOk(r);
    assert.equal(await Deno.readTextFile(join(dir, "notes.txt")), "mine");
    assert.deepEqual(await list(dir), [
      "losses.csv",
      "metrics.json",
      "notes.txt",
      "run.json",
      "samples.png",
      "student.safetensors",
      "transfer-set.safetensors",
    ]);

    const m = JSON.parse(await Deno.readTextFile(join(dir, "metrics.json")));
    for (const k of ["teacher_test_accuracy", "student_test_accuracy"]) {
      assert.ok(typeof m[k] === "number" && m[k] >= 0 && m[k] <= 1, `${k} = ${m[k]}`);
    }
    assert.equal(m.transfer_set_size, n);
    assert.equal(m.synthesis_iterations, 3);
    assert.ok(m.synthesis_seconds > 0 && m.distillation_seconds > 0);
    assert.equal(m.method, "soft-target");
    assert.equal(m.layer, "fc2");
    assert.equal(m.settings.synthesis.samples, n);
    assert.equal(m.settings.distillation.epochs, 2);
    assert.equal(m.test_set, DATA);
    assert.match(r.stdout, /teacher test accuracy\s+\d+\.\d\d%/);
    const stats = m.transfer_set_stats;
    assert.equal(stats.teacher_class_counts.length, 10);
    assert.equal(stats.teacher_class_counts.reduce((a: number, b: number) => a + b, 0), n);
    for (const k of ["target_agreement", "saturated_pixels"]) {
      assert.ok(stats[k] >= 0 && stats[k] <= 1, `${k} = ${stats[k]}`);
    }
    assert.match(r.stdout, /transfer set check\s+teacher agrees with \d+\.\d% of soft targets/);
    // --balance auto: the pilot's share and choice, in metrics.json and the summary.
    const st = m.soft_targets;
    assert.equal(st.balance_setting, "auto");
    assert.equal(st.pilot.samples, 2048);
    assert.ok(st.pilot.largest_class_share > 0 && st.pilot.largest_class_share <= 1);
    assert.equal(st.pilot.limit, 0.24);
    const on = st.pilot.largest_class_share > st.pilot.limit;
    assert.equal(st.drawn, on ? "class-balanced" : "feature-space");
    assert.ok(st.largest_class_share >= 0.1 && st.largest_class_share <= 1);
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    assert.match(
      r.stdout,
      new RegExp(
        `soft targets\\s+.*largest class ${pct(st.largest_class_share)} \\(--balance auto: ` +
          `a pilot of 2048 draws put ${pct(st.pilot.largest_class_share)} in one class, ` +
          `${on ? "over" : "under"} the 24.0% limit\\)`,
      ),
    );

    const ts = await loadSafetensors(join(dir, "transfer-set.safetensors"));
    assert.deepEqual(ts.tensors.images.shape, [n, 1, 32, 32]);
    assert.deepEqual(ts.tensors.soft_targets.shape, [n, 10]);
    assert.ok(ts.tensors.images.data.every((v) => v >= 0 && v <= 1));
    for (let i = 0; i < n; i++) {
      const row = ts.tensors.soft_targets.data.subarray(i * 10, i * 10 + 10);
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    }

    await gpuReady;
    const { model, metadata } = await loadModel(join(dir, "student.safetensors"));
    assert.equal(model.arch, "lenet5-half");
    assert.equal(metadata.dataset, "fashion-mnist");
    model.dispose();

    const png = await Deno.readFile(join(dir, "samples.png"));
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const view = new DataView(png.buffer, png.byteOffset);
    assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
    assert.ok(view.getUint32(16) > 0 && view.getUint32(20) > 0);

    const csv = (await Deno.readTextFile(join(dir, "losses.csv"))).trim().split("\n");
    assert.equal(csv[0], "phase,batch,epoch,step,loss");
    assert.ok(csv.some((l) => l.startsWith("synthesis,")));
    assert.ok(csv.some((l) => l.startsWith("distillation,")));
    for (const l of csv.slice(1)) assert.ok(Number.isFinite(Number(l.split(",")[4])), l);
  },
});

Deno.test("--preset paper and --preset large set their settings; explicit flags win", async () => {
  const out = join(tmp, "preset-paper");
  const r = await cli("synth", [
    ...["--teacher", teacher, "--preset", "paper", "--samples", "8", "--batch-size", "4"],
    ...["--iterations", "2", "--student-epochs", "1", "--student-batch-size", "4", "--out", out],
  ]);
  assertOk(r);
  const cfg = JSON.parse(await Deno.readTextFile(join(out, "run.json"))).config;
  const { synthesis: s, distillation: d } = cfg;
  assert.deepEqual(
    [s.sigma, s.tau, s.lambdaAct, s.actNorm, s.lr, s.layer],
    [1.5, 20, 0.05, "sample-l1", 0.001, "fc2"],
  );
  assert.deepEqual([d.tau, d.shift, d.flip, d.mixup], [20, false, false, false]);
  // Explicit flags win over the preset's 48,000 × 1,500 on batches of 100 and 200 epochs.
  assert.deepEqual([s.samples, s.batchSize, s.iterations, d.epochs], [8, 4, 2, 1]);
  assert.match(r.stdout, /transfer set check/);

  // 24,000 samples take a while: stop the run once its settings are written.
  const largeOut = join(tmp, "preset-large");
  const args = ["--teacher", teacher, "--preset", "large", "--iterations", "2", "--out", largeOut];
  assert.equal((await interruptWhen(args, join(largeOut, "run.json"), "SIGINT")).code, 130);
  const large = JSON.parse(await Deno.readTextFile(join(largeOut, "run.json"))).config;
  const ls = large.synthesis;
  assert.deepEqual([ls.samples, large.distillation.epochs, ls.iterations], [24000, 100, 2]);
  // The rest stays at the defaults.
  const expected = structuredClone(DEFAULTS);
  expected.synthesis.samples = 24000;
  expected.synthesis.iterations = 2;
  expected.distillation.epochs = 100;
  assert.deepEqual(large, expected);
});

Deno.test("an MNIST teacher gets no KD flips by default; an explicit --kd-flip wins", async () => {
  const mnistTeacher = join(tmp, "mnist-teacher.safetensors");
  const m = buildModel("lenet5", 1);
  await saveModel(mnistTeacher, m, { dataset: "mnist" });
  m.dispose();
  const tiny = ["--teacher", mnistTeacher, "--samples", "8", "--batch-size", "4"];
  const more = ["--iterations", "2", "--student-epochs", "1", "--student-batch-size", "4"];
  for (const [extra, flip] of [[[], false], [["--kd-flip", "on"], true]] as const) {
    const out = join(tmp, `mnist-${flip}`);
    assertOk(await cli("synth", [...tiny, ...more, ...extra, "--out", out]));
    const metrics = JSON.parse(await Deno.readTextFile(join(out, "metrics.json")));
    assert.equal(metrics.dataset, "mnist");
    assert.equal(metrics.settings.distillation.flip, flip);
  }
});

Deno.test("--help lists every flag with its default", async () => {
  const r = await cli("synth", ["--help"]);
  assertOk(r);
  const lines = r.stdout.split("\n");
  for (const name of [...Object.keys(FLAGS), "help", "verbose"]) {
    const i = lines.findIndex((l) => l.trimStart().startsWith(`--${name}`));
    assert.ok(i >= 0, `--${name} missing from --help`);
    if (name in FLAGS) assert.match(lines[i + 1], /\(default: .+\)$/, `--${name}: ${lines[i + 1]}`);
  }
  assert.match(
    r.stdout,
    new RegExp(
      `--samples <integer>\\n\\s+Transfer-set size\\. \\(default: ${DEFAULTS.synthesis.samples}\\)`,
    ),
  );
  for (const tool of ["eval", "train_teacher"]) {
    const h = await cli(tool, ["--help"]);
    assertOk(h);
    assert.match(h.stdout, /--data/);
  }
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
