/**
 * `deno task synth`: data-free distillation from a teacher checkpoint alone (Wang, AAAI 2021).
 *
 * Synthesises a transfer set from the teacher, distils a student on it, and reports both networks'
 * accuracy on the real test set. See `--help` for every flag; the flags of the run's settings
 * come from the settings schema (`synth_flags.ts`).
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  dataDirCandidates,
  type Dataset,
  DATASET_NAMES,
  type DatasetName,
  findDataDir,
  guessDataset,
  loadSplit,
  parseDatasetName,
} from "../data/datasets.ts";
import type { TransferSetStats } from "../dfkd/diagnostics.ts";
import {
  clearRunFolder,
  fileSha256,
  hasRun,
  isFinishedRun,
  LOCK_FILE,
  lockRunFolder,
  readRunFile,
  RUN_ENTRIES,
  type RunContext,
  runDfkd,
  type RunEvent,
  type RunFile,
  type RunMetrics,
  type RunOutcome,
  runShard,
  type ShardFile,
  type ShardOutcome,
  type SoftTargetReport,
  writeRunFile,
} from "../dfkd/run.ts";
import { synthesisBatchSize } from "../dfkd/batch_size.ts";
import { shardSlice } from "../dfkd/shard.ts";
import { chooseShard, processEnv, type ShardChoice } from "./shard_env.ts";
import {
  checkLowRes,
  type ConfigOverrides,
  type DfkdConfig,
  getSetting,
  type Preset,
  resolveConfig,
  setSetting,
  SETTINGS,
  storedOverrides,
} from "../dfkd/settings.ts";
import { CheckpointError, RunFolderError, SettingError } from "../errors.ts";
import type { Sequential } from "../nn/layers.ts";
import { checkNonZeroWeights, type LoadedModel, modelFromSafetensors } from "../nn/checkpoint.ts";
import { type Architecture, buildModel } from "../nn/models.ts";
import { loadSafetensors } from "../nn/safetensors.ts";
import { helpText, type ParsedFlags, parseFlags, UsageError } from "./flags.ts";
import { openJudge } from "./judge.ts";
import { dataNotFound, datasetOfTestSet, initGpuForCli, runMain } from "./main.ts";
import { type Progress, progressBar } from "./progress.ts";
import { asCliError, FLAGS, flagValue, inFlagTerms, overridesFromFlags } from "./synth_flags.ts";

export { FLAGS };

/** The bundled default teacher (LeNet-5 trained on Fashion-MNIST by this project). */
export const DEFAULT_TEACHER = fileURLToPath(
  new URL("../../examples/teachers/lenet5-fashion-mnist.safetensors", import.meta.url),
);

function timestamp(): string {
  return new Date().toISOString().replace(/\..*$/, "").replace(/[-:]/g, "").replace("T", "-");
}

const show = (v: unknown) => v === true ? "on" : v === false ? "off" : String(v);

/**
 * Loads the teacher and checks that its weights are finite. `hint` says what to do on failure.
 *
 * @throws {CheckpointError} naming the file, what is wrong and what to do.
 */
export async function loadTeacher(
  path: string,
  arch: Architecture | undefined,
  hint: string,
): Promise<LoadedModel> {
  try {
    const contents = await loadSafetensors(path);
    checkNonZeroWeights(contents, path);
    return modelFromSafetensors(contents, path, { arch, requireFinite: true });
  } catch (e) {
    if (e instanceof CheckpointError) throw new CheckpointError(`${e.message}; ${hint}`);
    throw e;
  }
}

/** Largest activation of one image in `model`, in bytes (input included). */
function bytesPerImage(model: Sequential): number {
  const sizes = model.shapes(1).map((s) => s.shape.reduce((a, b) => a * b, 1));
  return 4 * Math.max(model.inputShape.reduce((a, b) => a * b, 1), ...sizes);
}

/** A path resolved through symbolic links where it exists, else made absolute. */
function realOrResolved(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    try {
      return join(Deno.realPathSync(dirname(resolve(path))), basename(path));
    } catch {
      return resolve(path);
    }
  }
}

/**
 * Refuses a run whose outputs would overwrite its teacher (e.g. `--teacher D/student.safetensors
 * --out D`): no output may overwrite an input, `--force` or not.
 *
 * @throws {UsageError} naming the input and the output it collides with.
 */
function checkOutputsSpareInputs(outDir: string, inputPath: string, input = "teacher"): void {
  const teacher = realOrResolved(inputPath);
  for (const entry of [...RUN_ENTRIES, LOCK_FILE]) {
    const out = realOrResolved(join(outDir, entry));
    if (teacher === out || teacher.startsWith(out + "/")) {
      throw new UsageError(
        `--${input} ${inputPath} is the output folder's ${entry}: this run would overwrite it; ` +
          `copy the ${input} out of ${outDir} first, or choose another --out`,
      );
    }
  }
}

/**
 * The settings of a `run.json` read back for a resume, checked against the schema (a setting the
 * file lacks takes its default), and its teacher, dataset and test-set folder checked too, so
 * that a hand-edited or corrupt file is refused before any work starts.
 *
 * @throws {RunFolderError} naming the file, the setting (and its flag), its value and what is
 *   allowed.
 */
function runFileConfig(run: RunFile, dir: string): DfkdConfig {
  const path = join(dir, "run.json");
  const fix = `restore the file, or start the run over with --out ${dir} --force`;
  if ("samples" in run.config && !("synthesis" in run.config)) {
    throw new RunFolderError(`${path} was written by an earlier version of this tool; ${fix}`);
  }
  if (run.teacher === "") throw new RunFolderError(`${path}: "teacher" is empty; ${fix}`);
  const dataset = parseDatasetName(String(run.dataset));
  if (dataset === null) {
    throw new RunFolderError(
      `${path}: "dataset" is ${JSON.stringify(run.dataset)}; it must be one of ` +
        `${DATASET_NAMES.join(", ")}; ${fix}`,
    );
  }
  if (run.data !== undefined && run.data !== null && typeof run.data !== "string") {
    throw new RunFolderError(`${path}: "data" must be a folder name or null; ${fix}`);
  }
  try {
    return resolveConfig({ dataset, overrides: storedOverrides(run.config as ConfigOverrides) });
  } catch (e) {
    if (!(e instanceof SettingError)) throw e;
    const flag = SETTINGS.find((s) => s.key === e.key)?.flag;
    throw new RunFolderError(
      `${path}: ${flag ? e.message : `"${e.key}": ${e.message}`}; ${fix}`,
    );
  }
}

/** Where a run's settings come from: a new run's flags, or the run file of the run resumed. */
interface RunPlan {
  outDir: string;
  teacherPath: string;
  /** The run file of the run resumed, or null for a new run. */
  run: RunFile | null;
  /** The resumed run's settings (with the changes allowed), or null for a new run. */
  cfg: DfkdConfig | null;
  /** `--flag old → new` for every setting that a resume changes. */
  changed: string[];
  /** The shard this process makes (`--shard`, the environment, or the resumed run's), or null. */
  shard: ShardChoice | null;
}

/** Step 1: the output folder and where the settings come from (cheap checks, no GPU). */
async function planRun(f: ParsedFlags): Promise<RunPlan> {
  const given = (flag: string) => f.explicit.has(flag);
  for (const flag of ["out", "resume", "teacher", "data"]) {
    if (given(flag) && (f[flag] as string).trim() === "") {
      throw new UsageError(`--${flag} needs a path; got an empty string`);
    }
  }
  return f.resume === undefined ? await planNewRun(f) : await planResume(f);
}

/** A new run: its output folder must hold no run unless `--force`. */
async function planNewRun(f: ParsedFlags): Promise<RunPlan> {
  const given = (flag: string) => f.explicit.has(flag);
  const teacherPath = given("teacher") ? f.teacher as string : DEFAULT_TEACHER;
  const shard = chooseShard(f.shard as string | undefined, processEnv);
  const suffix = shard ? `-shard-${shard.index}-of-${shard.count}` : "";
  const outDir = given("out") ? f.out as string : join("runs", timestamp() + suffix);
  checkOutputsSpareInputs(outDir, teacherPath);
  if (!f.force && await isFinishedRun(outDir)) {
    throw new RunFolderError(
      `--out ${outDir} already holds a finished run; pass --force to overwrite it or choose ` +
        `another --out`,
    );
  }
  if (!f.force && await hasRun(outDir)) {
    let readable = true;
    await readRunFile(outDir).catch(() => readable = false);
    throw new RunFolderError(
      readable
        ? `--out ${outDir} holds an unfinished run; continue it with --resume ${outDir}, or ` +
          `pass --force to start over`
        : `--out ${outDir} holds a run whose run.json cannot be read, so it cannot be ` +
          `resumed; pass --force to start over, or choose another --out`,
    );
  }
  return { outDir, teacherPath, run: null, cfg: null, changed: [], shard };
}

/** A resumed run: its run.json gives the settings; only resumable ones may change. */
async function planResume(f: ParsedFlags): Promise<RunPlan> {
  const given = (flag: string) => f.explicit.has(flag);
  const outDir = f.resume as string;
  if (given("force")) {
    throw new UsageError(
      `--force cannot be combined with --resume; to start ${outDir} over, drop --resume`,
    );
  }
  for (const flag of ["preset", "arch", "dataset"]) {
    if (given(flag)) {
      throw new UsageError(
        `--${flag} applies to new runs only; the run in ${outDir} keeps its settings (run.json)`,
      );
    }
  }
  if (given("out") && resolve(f.out as string) !== resolve(outDir)) {
    throw new UsageError(
      `--out ${f.out} and --resume ${outDir} name different folders; --resume DIR continues ` +
        `the run in DIR: drop --out`,
    );
  }
  if (await isFinishedRun(outDir)) {
    throw new RunFolderError(
      `--resume ${outDir}: the run there is finished (metrics.json or, for a shard, shard.json); nothing to resume. ` +
        `Start a new run with another --out, or redo it with --out ${outDir} --force`,
    );
  }
  const run = await readRunFile(outDir).catch((e) => {
    if (!(e instanceof RunFolderError) || e.message.includes("no run.json")) throw e;
    throw new RunFolderError(`${e.message}; start the run over with --out ${outDir} --force`);
  });
  const cfg = runFileConfig(run, outDir);
  if (given("teacher") && resolve(f.teacher as string) !== resolve(run.teacher)) {
    throw new UsageError(
      `--teacher ${f.teacher} differs from the teacher of the run in ${outDir} ` +
        `(${run.teacher}); drop --teacher to resume it`,
    );
  }
  checkOutputsSpareInputs(outDir, run.teacher);
  return {
    outDir,
    teacherPath: run.teacher,
    run,
    cfg,
    changed: applyResumeChanges(f, cfg, outDir),
    shard: resumedShard(f, run, outDir),
  };
}

/**
 * The shard of a resumed run (its run.json's), or null for a whole run.
 *
 * @throws {UsageError} when `--shard` names another shard.
 */
function resumedShard(f: ParsedFlags, run: RunFile, outDir: string): ShardChoice | null {
  const was = run.shard ? `${run.shard.index}/${run.shard.count}` : "none";
  if (f.explicit.has("shard") && f.shard !== was) {
    throw new UsageError(
      `--shard ${f.shard} differs from the run in ${outDir} (shard ${was}); drop --shard to ` +
        `resume it`,
    );
  }
  return run.shard ? { index: run.shard.index, count: run.shard.count, source: "run.json" } : null;
}

/**
 * Applies the settings given on the command line of a resume to `cfg`.
 *
 * @returns `--flag old → new` for each change.
 * @throws {UsageError} for a change of a setting that fixed the finished work.
 */
function applyResumeChanges(f: ParsedFlags, cfg: DfkdConfig, outDir: string): string[] {
  const changed: string[] = [];
  for (const s of SETTINGS) {
    const v = flagValue(f, s);
    const was = getSetting(cfg, s.key);
    if (!f.explicit.has(s.flag) || v === was) continue;
    if (!s.resumable) {
      throw new UsageError(
        `--${s.flag} cannot change when resuming: the finished work in ${outDir} used ` +
          `--${s.flag} ${show(was)}; drop --${s.flag}, or start a new run`,
      );
    }
    changed.push(`--${s.flag} ${show(was)} → ${show(v)}`);
    setSetting(cfg as unknown as Record<string, unknown>, s.key, v);
  }
  return changed;
}

/**
 * The teacher's dataset: the run file's on resume, else `--dataset`, else the checkpoint's
 * metadata (any usual spelling), else null (unknown).
 *
 * @throws {UsageError} for an unknown `--dataset`.
 * @throws {CheckpointError} for an unknown dataset in the metadata.
 */
function teacherDataset(
  f: ParsedFlags,
  plan: RunPlan,
  metadata: Record<string, string>,
): DatasetName | null {
  if (plan.run) return parseDatasetName(plan.run.dataset)!;
  if (f.dataset !== undefined) {
    const d = parseDatasetName(f.dataset as string);
    if (!d) {
      throw new UsageError(
        `--dataset must be one of ${DATASET_NAMES.join(", ")} (or a usual spelling such as ` +
          `fmnist, FashionMNIST, MNIST); got "${f.dataset}"`,
      );
    }
    return d;
  }
  if (metadata.dataset === undefined) return null;
  const d = parseDatasetName(metadata.dataset);
  if (!d) {
    throw new CheckpointError(
      `${plan.teacherPath}: the checkpoint's metadata names dataset "${metadata.dataset}"; this ` +
        `tool knows ${DATASET_NAMES.join(", ")}: pass --dataset to say which it is`,
    );
  }
  return d;
}

/**
 * Step 4: the real test set, for accuracy only: `--data`, else (on resume) the folder the run was
 * started with, else the standard places.
 *
 * @throws {UsageError} when an explicit folder, or the resumed run's folder, no longer holds it.
 */
export async function openTestSet(
  f: ParsedFlags,
  plan: Pick<RunPlan, "run" | "outDir">,
  dataset: DatasetName,
): Promise<{ dir: string | null; testSet: Dataset | null }> {
  const recorded = plan.run?.data ?? null;
  if (f.data === undefined && recorded !== null) {
    const dir = findDataDir(dataset, recorded);
    if (!dir) {
      throw new UsageError(
        `the run in ${plan.outDir} was started with the ${dataset} test set in ${recorded}, ` +
          `which no longer holds it; pass --data DIR to measure accuracy on another copy`,
      );
    }
    return { dir, testSet: checkedTestSet(await loadSplit(dir, "test"), dir, dataset) };
  }
  const dir = findDataDir(dataset, f.data as string | undefined);
  if (f.data !== undefined && !dir) throw dataNotFound(dataset, f.data as string);
  return { dir, testSet: dir ? checkedTestSet(await loadSplit(dir, "test"), dir, dataset) : null };
}

/** `set`, after warning when it looks like the other dataset's test set. */
function checkedTestSet(set: Dataset, dir: string, dataset: DatasetName): Dataset {
  const looks = guessDataset(set);
  if (looks !== null && looks !== dataset) {
    console.error(
      `warning: the test set in ${dir} looks like ${looks}, not ${dataset} (its mean pixel ` +
        `value); the ${dataset} teacher's accuracy on it will mean little: pass --data the ` +
        `${dataset} test set`,
    );
  }
  return set;
}

/** Runs `deno task synth` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(helpText(
      "Usage: deno task synth [flags]",
      "Data-free knowledge distillation (Wang, AAAI 2021): synthesises a transfer set from the\n" +
        "teacher alone, distils a student on it, and reports both networks' accuracy on the real\n" +
        "test set. Writes run.json (the settings), metrics.json, transfer-set.safetensors,\n" +
        "student.safetensors, samples.png and losses.csv into the output folder. Ctrl-C (or\n" +
        "SIGTERM) stops after the step in progress and keeps finished batches and epochs; the\n" +
        "run continues with --resume DIR.",
      FLAGS,
    ));
    return 0;
  }
  // 1. The output folder and where the settings come from (cheap checks first).
  const plan = await planRun(f);
  // 2. The GPU and the teacher.
  const gpu = await initGpuForCli();
  const t = await openTeacher(f, plan);
  if (f.judge !== undefined) {
    checkOutputsSpareInputs(plan.outDir, f.judge as string, "judge");
    t.judge = await openJudge(f.judge as string, t.teacher);
  }
  // 3. The configuration: defaults, dataset rule, preset, explicit flags (or the resumed run's).
  const cfg = plan.cfg ?? resolveConfig({
    preset: f.preset as Preset,
    dataset: t.dataset,
    overrides: overridesFromFlags(f),
  });
  checkFitsTeacher(cfg, t.teacher, gpu.maxStorageBufferBindingSize);
  const slice = plan.shard ? shardSlice(plan.shard, cfg.synthesis.samples) : null;
  const batchSize = plan.run?.synthesis_batch_size ??
    synthesisBatchSize(
      cfg.synthesis.batchSize,
      t.teacher,
      slice?.images ?? cfg.synthesis.samples,
      gpu,
    );
  // 4. The real test set, for accuracy only.
  const test = await openTestSet(f, plan, t.dataset);
  // 5. The run, in its locked output folder.
  return await runInFolder(f, plan, cfg, t, test, { adapter: gpu.description, slice, batchSize });
}

/** The teacher of a run, checked, with its dataset and the SHA-256 of its file. */
interface OpenedTeacher {
  teacher: Sequential;
  metadata: Record<string, string>;
  sha: string;
  dataset: DatasetName;
  /** The model of `--judge`, when given. */
  judge?: Sequential;
}

/** Loads the teacher; on resume, checks it is the file the run was started with. */
async function openTeacher(f: ParsedFlags, plan: RunPlan): Promise<OpenedTeacher> {
  const { run, outDir, teacherPath } = plan;
  const hint = run
    ? `restore the teacher the run in ${outDir} was started with (run.json), or start a new run`
    : "pass --teacher a LeNet-5 checkpoint in safetensors format (make one with " +
      "`deno task train-teacher`; a PyTorch state_dict of another shape needs --arch)";
  const arch = run ? undefined : f.arch as Architecture | undefined;
  const { model: teacher, metadata } = await loadTeacher(teacherPath, arch, hint);
  const sha = await fileSha256(teacherPath);
  if (run?.teacher_sha256 && run.teacher_sha256 !== sha) {
    throw new RunFolderError(
      `--resume ${outDir}: the teacher ${teacherPath} changed since the run started ` +
        `(SHA-256 differs); restore it, or start a new run`,
    );
  }
  const dataset = teacherDataset(f, plan, metadata) ??
    await datasetOfTestSet(f.data as string | undefined) ??
    "fashion-mnist";
  return { teacher, metadata, sha, dataset };
}

/** How a run is made: its adapter, its shard's slice (or null) and its synthesis batch size. */
interface RunShape {
  adapter: string;
  slice: ShardFile | null;
  batchSize: number;
}

/**
 * Creates and locks the output folder, writes run.json, runs (or resumes) the run, and prints the
 * summary; the lock is released however it ends.
 *
 * @returns the exit code: 0, or 130/143 when a signal stopped the run.
 */
async function runInFolder(
  f: ParsedFlags,
  plan: RunPlan,
  cfg: DfkdConfig,
  t: OpenedTeacher,
  test: { dir: string | null; testSet: Dataset | null },
  shape: RunShape,
): Promise<number> {
  const { adapter, slice, batchSize } = shape;
  const { outDir, run, changed, teacherPath } = plan;
  try {
    await Deno.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new UsageError(
      `--out ${outDir}: cannot create the folder (${(e as Error).message}); choose a writable one`,
    );
  }
  const unlock = await lockRunFolder(outDir);
  try {
    if (!run && f.force) await clearRunFolder(outDir);
    if (!run) {
      await writeRunFile(outDir, {
        config: cfg,
        teacher: resolve(teacherPath),
        teacher_sha256: t.sha,
        dataset: t.dataset,
        data: test.dir ? resolve(test.dir) : null,
        synthesis_batch_size: batchSize,
        ...(slice ? { shard: slice } : {}),
      });
    } else if (changed.length > 0) await writeRunFile(outDir, { ...run, config: cfg });
    announce(plan, t, test, shape, cfg);
    const ctx = {
      teacher: t.teacher,
      judge: t.judge,
      teacherName: resolve(teacherPath), // as run.json has it, so a resumed run writes the same
      dataset: t.dataset,
      testSet: test.testSet,
      testSetDir: test.dir,
      adapter,
      synthesisBatchSize: batchSize,
    };
    const outcome = await runWithSignals<RunOutcome | ShardOutcome>(
      (hooks) => slice ? runShard(cfg, outDir, hooks, slice) : runDfkd(cfg, outDir, hooks),
      ctx,
    );
    if (outcome.stopped) {
      console.error(
        `interrupted: finished work is saved in ${outDir}; continue with --resume ${outDir}`,
      );
      return outcome.signal === "SIGTERM" ? 143 : 130;
    }
    if (!("metrics" in outcome)) {
      printShardSummary(outcome.shard, outcome.seconds, cfg, outDir);
      return 0;
    }
    warnTeacherAccuracy(outcome.metrics, t.metadata, t.dataset, test.dir);
    printSummary(outcome.metrics, cfg, t.teacher, outDir);
    return 0;
  } finally {
    await unlock();
  }
}

/**
 * The lines printed before the run starts: adapter, teacher, output, synthesis batches, shard,
 * resume, test set.
 */
function announce(
  plan: RunPlan,
  t: OpenedTeacher,
  test: { dir: string | null; testSet: Dataset | null },
  shape: RunShape,
  cfg: DfkdConfig,
): void {
  const { outDir, run, changed, teacherPath } = plan;
  const { adapter, slice, batchSize } = shape;
  console.error(`adapter: ${adapter}`);
  console.error(`teacher: ${teacherPath} (${t.teacher.arch}, ${t.dataset}); output: ${outDir}`);
  const auto = cfg.synthesis.batchSize === "auto" ? " (--batch-size auto)" : "";
  console.error(`synthesis batches: ${batchSize} images${auto}`);
  if (slice && plan.shard) {
    console.error(
      `shard ${slice.index}/${slice.count} (from ${plan.shard.source}): images ${slice.first}…` +
        `${slice.first + slice.images - 1} of ${cfg.synthesis.samples}; no distillation`,
    );
  }
  if (run) {
    console.error(
      `resuming the run in ${outDir}${changed.length ? `; changed: ${changed.join(", ")}` : ""}`,
    );
  }
  if (!test.testSet) {
    console.error(
      `no ${t.dataset} test set found (looked in ${dataDirCandidates(t.dataset).join(", ")}): ` +
        `accuracy will not be measured; pass --data DIR to measure it`,
    );
  }
}

/**
 * Checks the settings against the teacher and the adapter: the modelled layer exists, the
 * low-resolution factor divides the input, and the batches fit the adapter's buffer limit.
 *
 * @throws {UsageError} naming the flag and what fits.
 */
function checkFitsTeacher(cfg: DfkdConfig, teacher: Sequential, maxBinding: number): void {
  const { synthesis: s, distillation: d } = cfg;
  if (s.method === "soft-target") {
    const fc = teacher.layers.filter((l) => l.layer.kind === "linear").map((l) => l.name);
    if (!fc.includes(s.layer)) {
      throw new UsageError(
        `--layer ${s.layer} is not a fully connected layer of the ${teacher.arch} teacher; ` +
          `choose one of ${fc.join(", ")}`,
      );
    }
  }
  checkLowRes(s.lowRes, teacher.inputShape);
  const student = buildModel(d.student, 0);
  const perImage = Math.max(bytesPerImage(teacher), bytesPerImage(student));
  student.dispose();
  const maxBatch = Math.floor(maxBinding / perImage);
  const batches = [["batch-size", s.batchSize], ["student-batch-size", d.batchSize]];
  for (const [flag, bs] of batches) {
    if ((bs as number) > maxBatch) {
      throw new UsageError(
        `--${flag} ${bs} is larger than this adapter's buffer limits allow (at most ` +
          `${maxBatch} images: ${maxBinding} bytes per buffer); use a smaller --${flag}`,
      );
    }
  }
}

/**
 * Runs `runner` ({@link runDfkd} or {@link runShard}) with a progress bar per phase, given the
 * context `ctx` plus progress and stop hooks. Ctrl-C or SIGTERM finishes the step in
 * progress, keeps finished batches and epochs, and returns `stopped`; a second signal exits at
 * once (the finished work is on disk already).
 */
export async function runWithSignals<T extends { stopped: boolean }>(
  runner: (ctx: RunContext) => Promise<T>,
  ctx: Omit<RunContext, "onEvent" | "shouldStop">,
): Promise<{ stopped: true; signal: string } | Exclude<T, { stopped: true }>> {
  let signal: "SIGINT" | "SIGTERM" | null = null;
  const onSignal = (s: "SIGINT" | "SIGTERM") => () => {
    if (signal) Deno.exit(s === "SIGINT" ? 130 : 143);
    signal = s;
  };
  const sigint = onSignal("SIGINT");
  const sigterm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);
  let bar: Progress | null = null;
  let barPhase = "";
  const onEvent = (e: RunEvent) => {
    if (e.phase === "message") {
      console.error(inFlagTerms(e.text));
      return;
    }
    if (e.phase !== barPhase) {
      bar?.stop();
      barPhase = e.phase;
      bar = e.phase === "synthesis"
        ? progressBar("synthesis   ", e.samples, "samples")
        : progressBar("distillation", e.steps, "steps", e.resumed ? e.step : 0);
    }
    if (e.phase === "synthesis") {
      bar!.update(Math.floor(e.samplesDone), { loss: e.loss }, e.resumed);
    } else bar!.update(e.step, { loss: e.resumed ? "-" : e.loss }, e.resumed);
  };
  try {
    const outcome = await runner({ ...ctx, onEvent, shouldStop: () => signal !== null });
    return outcome.stopped
      ? { stopped: true, signal: signal ?? "SIGINT" }
      : outcome as Exclude<T, { stopped: true }>;
  } finally {
    (bar as Progress | null)?.stop();
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
  }
}

/**
 * Warns when the teacher scores far below the accuracy its checkpoint records (more than 5
 * points), or below 50% when it records none: the test set is probably another dataset's.
 */
export function warnTeacherAccuracy(
  m: RunMetrics,
  metadata: Record<string, string>,
  dataset: DatasetName,
  dataDir: string | null,
): void {
  const measured = m.teacher_test_accuracy;
  if (measured === null) return;
  const recorded = Number(metadata.test_accuracy);
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  if (Number.isFinite(recorded) && measured < recorded - 0.05) {
    console.error(
      `warning: the teacher scores ${pct(measured)} on ${dataDir}, far below the ` +
        `${pct(recorded)} its checkpoint records; is that folder the ${dataset} test set?`,
    );
  } else if (!Number.isFinite(recorded) && measured < 0.5) {
    console.error(
      `warning: the teacher scores only ${pct(measured)} on ${dataDir}; is that folder the ` +
        `${dataset} test set, and the checkpoint a trained ${dataset} classifier?`,
    );
  }
}

/** Prints the summary table of a finished run. */
export function printSummary(
  m: RunMetrics,
  cfg: DfkdConfig,
  teacher: Sequential,
  outDir: string,
): void {
  const pct = (x: number | null) => x === null ? "not measured" : `${(x * 100).toFixed(2)}%`;
  const adv = cfg.distillation.adversarial;
  const rows: [string, string][] = [
    ["method", `${m.method} (layer ${m.layer})`],
    ["teacher", `${teacher.arch}, ${teacher.parameterCount()} parameters`],
    ["student", `${cfg.distillation.student}, ${m.student_parameters} parameters`],
    ["transfer set", `${m.transfer_set_size} images × ${m.synthesis_iterations} iterations`],
    ["soft targets", softTargetLine(m.soft_targets)],
    ["transfer set check", transferSetCheck(m.transfer_set_stats)],
    ...(adv.steps > 0
      ? [[
        "KD exploration",
        `${adv.steps} step(s) of ${adv.stepSize} on ${
          Math.round(adv.fraction * 100)
        }% of each batch`,
      ] as [string, string]]
      : []),
    [
      "synthesis",
      `${m.synthesis_seconds.toFixed(1)} s (${
        m.synthesis_throughput.toFixed(0)
      } sample-iterations/s)`,
    ],
    [
      "distillation",
      `${m.distillation_seconds.toFixed(1)} s (${m.distillation_throughput.toFixed(0)} images/s)`,
    ],
    ["teacher test accuracy", pct(m.teacher_test_accuracy)],
    ["student test accuracy", pct(m.student_test_accuracy)],
    ["output", outDir],
  ];
  const wk = Math.max(...rows.map((r) => r[0].length));
  console.log("");
  for (const [k, v] of rows) console.log(`${k.padEnd(wk)}  ${v}`);
}

/** Prints the summary of a finished shard. */
function printShardSummary(s: ShardFile, seconds: number, cfg: DfkdConfig, outDir: string): void {
  const rate = seconds > 0 ? (s.images * cfg.synthesis.iterations) / seconds : 0;
  console.log("");
  console.log(
    `shard ${s.index}/${s.count}: images ${s.first}…${s.first + s.images - 1} of ` +
      `${cfg.synthesis.samples} in ${outDir} (${seconds.toFixed(1)} s, ${rate.toFixed(0)} ` +
      `sample-iterations/s)`,
  );
  console.log(`when all ${s.count} shards are finished: deno task merge DIR… --out OUT`);
}

/** One line of the summary: how the soft targets were drawn, why, and how even they came out. */
function softTargetLine(t: SoftTargetReport): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const how = {
    "feature-space": "sampled from the feature-space model",
    "class-balanced": "class-balanced",
    "teacher-on-noise": "the teacher's predictions on noise images (--balance does not apply)",
  }[t.drawn];
  const why = t.pilot
    ? ` (--balance auto: a pilot of ${t.pilot.samples} draws put ${
      pct(t.pilot.largest_class_share)
    } in one class, ${t.pilot.largest_class_share > t.pilot.limit ? "over" : "under"} the ${
      pct(t.pilot.limit)
    } limit)`
    : "";
  return `${how}; largest class ${pct(t.largest_class_share)}${why}`;
}

/** One line of the summary: what the teacher makes of the transfer set. */
function transferSetCheck(s: TransferSetStats): string {
  const n = s.teacher_class_counts.reduce((a, b) => a + b, 0);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const judge = s.judge_agreement === null ? "" : `, the judge with ${pct(s.judge_agreement)}`;
  return `teacher agrees with ${pct(s.target_agreement)} of soft targets${judge}; its largest ` +
    `class ${pct(Math.max(...s.teacher_class_counts) / n)}; ${
      pct(s.saturated_pixels)
    } of pixels at 0 or 1`;
}

if (import.meta.main) runMain(main, asCliError);
