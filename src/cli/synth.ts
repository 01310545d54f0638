/**
 * `deno task synth`: data-free distillation from a teacher checkpoint alone (Wang, AAAI 2021).
 *
 * Synthesises a transfer set from the teacher, distils a student on it, and reports both networks'
 * accuracy on the real test set. See `--help` for every flag.
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
import { DEFAULTS, type DfkdConfig, largePreset, METHODS, paperPreset } from "../dfkd/config.ts";
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
  RunFolderError,
  type RunMetrics,
  writeRunFile,
} from "../dfkd/run.ts";
import { DiskFullError } from "../io/atomic.ts";
import type { Sequential } from "../nn/layers.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { type Architecture, ARCHITECTURES, buildModel } from "../nn/models.ts";
import { CheckpointError, loadSafetensors } from "../nn/safetensors.ts";
import { type FlagSpec, helpText, type ParsedFlags, parseFlags, UsageError } from "./flags.ts";
import { dataNotFound, initGpuForCli, runMain } from "./main.ts";
import { type Progress, progressBar } from "./progress.ts";

/** The bundled default teacher (LeNet-5 trained on Fashion-MNIST by this project). */
export const DEFAULT_TEACHER = fileURLToPath(
  new URL("../../examples/teachers/lenet5-fashion-mnist.safetensors", import.meta.url),
);

const D = DEFAULTS;
const onOff = ["on", "off"] as const;
/** Every flag of `deno task synth`, with its default and help text. */
export const FLAGS: Record<string, FlagSpec> = {
  teacher: {
    type: "string",
    default: "examples/teachers/lenet5-fashion-mnist.safetensors",
    help: "Teacher checkpoint (safetensors).",
  },
  data: {
    type: "string",
    defaultText: "searched: $DFKD_DATA_DIR[/<dataset>], /usr/share/datasets/<dataset>, " +
      "~/.cache/dfkd/<dataset>, ./data/<dataset>",
    help: "Folder with the real test set's IDX files, for accuracy only.",
  },
  arch: {
    type: "string",
    defaultText: "the checkpoint's metadata",
    choices: ARCHITECTURES,
    help: "Architecture of the teacher, for a checkpoint whose metadata names none (a plain " +
      "PyTorch state_dict: its module names, e.g. features.0 / classifier.4, are mapped in order).",
  },
  dataset: {
    type: "string",
    defaultText: "the checkpoint's metadata, else fashion-mnist",
    help: "Dataset the teacher was trained on: fashion-mnist or mnist (usual spellings such as " +
      "fmnist, FashionMNIST, MNIST are accepted).",
  },
  out: { type: "string", default: "runs/<date-time>", help: "Output folder." },
  resume: {
    type: "string",
    defaultText: "none: start a new run",
    help: "Continue the interrupted run in this folder (its run.json gives the settings; " +
      "--synth-lr, --tau, --lambda-act, --act-norm, --iterations, --student-lr, --kd-tau, " +
      "--kd-shift, --kd-flip, --kd-mixup, --kd-adv-*, --student-epochs and --log-every may be " +
      "changed for the work left).",
  },
  force: {
    type: "boolean",
    default: false,
    help: "Overwrite an output folder that holds a finished run.",
  },
  preset: {
    type: "string",
    default: "default",
    choices: ["default", "large", "paper"],
    help: "`large`: the defaults with 24,000 samples and 100 KD epochs (80-81% on the bundled " +
      "Fashion-MNIST teacher, no gain on MNIST; about 2 min on a GPU, 20-25 min on 2 CPU " +
      "cores); `paper`: the paper's settings and sizes (explicit flags still win).",
  },
  method: {
    type: "string",
    default: D.method,
    choices: METHODS,
    help: "soft-target (the paper), softmax-space (targets at the logits), noise (no synthesis).",
  },
  layer: {
    type: "string",
    default: D.layer,
    help: "Teacher layer modelled by the feature-space model (fc1, fc2, fc3 = logits).",
  },
  sigma: {
    type: "number",
    default: D.sigma,
    min: 0,
    exclusiveMin: true,
    help: "σ of the feature-space model (paper: 1.5).",
  },
  tau: {
    type: "number",
    default: D.tau,
    min: 0,
    exclusiveMin: true,
    help: "Temperature τ of the soft targets and the synthesis KL (paper: 20).",
  },
  "lambda-act": {
    type: "number",
    default: D.lambdaAct,
    min: 0,
    help: "λ_a, weight of the activation loss on conv1 (paper: 0.05).",
  },
  "act-norm": {
    type: "string",
    default: D.actNorm,
    choices: ["sample-l1", "element-mean"],
    help: "Activation-loss normalisation: the paper's per-sample L1, or the mean over elements.",
  },
  samples: {
    type: "integer",
    default: D.samples,
    min: 1,
    max: 1_000_000,
    help: "Transfer-set size.",
  },
  iterations: {
    type: "integer",
    default: D.iterations,
    min: 1,
    help: "Adam iterations per synthesis batch.",
  },
  "batch-size": {
    type: "integer",
    default: D.batchSize,
    min: 1,
    help: "Images per synthesis batch.",
  },
  "synth-lr": {
    type: "number",
    default: D.synthLr,
    min: 0,
    exclusiveMin: true,
    help: "Adam learning rate on the pixels.",
  },
  "synth-jitter": {
    type: "integer",
    default: D.synthJitter,
    min: 0,
    max: 16,
    help:
      "Random circular shifts of up to this many pixels between synthesis iterations (0 = off).",
  },
  "synth-flip": {
    type: "string",
    default: D.synthFlip ? "on" : "off",
    choices: onOff,
    help: "Random horizontal flips between synthesis iterations.",
  },
  "synth-smooth": {
    type: "number",
    default: D.synthSmooth,
    min: 0,
    max: 8,
    help:
      "σ in pixels of a Gaussian-blur pixel parametrisation: images are blur(z), z optimised (0 = plain pixels).",
  },
  student: {
    type: "string",
    default: D.student,
    choices: ARCHITECTURES,
    help: "Student architecture.",
  },
  "student-epochs": {
    type: "integer",
    default: D.studentEpochs,
    min: 1,
    help: "Distillation epochs over the transfer set.",
  },
  "student-lr": {
    type: "number",
    default: D.studentLr,
    min: 0,
    exclusiveMin: true,
    help: "Peak Adam learning rate of the student (cosine decay).",
  },
  "student-batch-size": {
    type: "integer",
    default: D.studentBatchSize,
    min: 1,
    help: "Images per distillation step.",
  },
  "kd-tau": {
    type: "number",
    default: D.kdTau,
    min: 0,
    exclusiveMin: true,
    help: "Temperature of the KD loss (paper: 20).",
  },
  "kd-shift": {
    type: "string",
    default: "on",
    choices: onOff,
    help: "Random ±2-pixel shifts in distillation, relabelled by the teacher.",
  },
  "kd-flip": {
    type: "string",
    default: "on",
    choices: onOff,
    help: "Random horizontal flips in distillation, relabelled by the teacher " +
      "(off by default for an MNIST teacher: digits are not mirror-symmetric).",
  },
  "kd-mixup": {
    type: "string",
    default: D.kdMixup ? "on" : "off",
    choices: onOff,
    help: "Mixup of distillation batches (λ ~ U(0, 1)), relabelled by the teacher.",
  },
  "kd-adv-steps": {
    type: "integer",
    default: D.kdAdvSteps,
    min: 0,
    max: 100,
    help: "Signed-gradient ascent steps that move part of each distillation batch toward where " +
      "student and teacher disagree, before the teacher relabels it (0 = off).",
  },
  "kd-adv-step-size": {
    type: "number",
    default: D.kdAdvStepSize,
    min: 0,
    max: 1,
    help: "Size of each of those steps, in pixel units ([0, 1] scale), in [0, 1]; used only " +
      "with --kd-adv-steps above 0.",
  },
  "kd-adv-fraction": {
    type: "number",
    default: D.kdAdvFraction,
    min: 0,
    max: 1,
    help: "Share of each distillation batch that takes those steps, in [0, 1]; used only " +
      "with --kd-adv-steps above 0.",
  },
  seed: {
    type: "integer",
    default: D.seed,
    min: 0,
    max: Number.MAX_SAFE_INTEGER - 1,
    help: "Seed of every random draw (same seed, same adapter: same result).",
  },
  "log-every": {
    type: "integer",
    default: D.logEvery,
    min: 1,
    help: "Read the loss back every this many steps.",
  },
};

/** Flag name → config key. */
export const KEYS: Record<string, keyof DfkdConfig> = {
  method: "method",
  layer: "layer",
  sigma: "sigma",
  tau: "tau",
  "lambda-act": "lambdaAct",
  "act-norm": "actNorm",
  samples: "samples",
  iterations: "iterations",
  "batch-size": "batchSize",
  "synth-lr": "synthLr",
  "synth-jitter": "synthJitter",
  "synth-flip": "synthFlip",
  "synth-smooth": "synthSmooth",
  student: "student",
  "student-epochs": "studentEpochs",
  "student-lr": "studentLr",
  "student-batch-size": "studentBatchSize",
  "kd-tau": "kdTau",
  "kd-shift": "kdShift",
  "kd-flip": "kdFlip",
  "kd-mixup": "kdMixup",
  "kd-adv-steps": "kdAdvSteps",
  "kd-adv-step-size": "kdAdvStepSize",
  "kd-adv-fraction": "kdAdvFraction",
  seed: "seed",
  "log-every": "logEvery",
};

/**
 * Settings that `--resume` may change: they only steer work not done yet. The others fix the
 * layout or the meaning of the finished batches and epochs.
 */
const RESUME_TUNABLE: ReadonlySet<string> = new Set([
  "synth-lr",
  "tau",
  "lambda-act",
  "act-norm",
  "iterations",
  "student-lr",
  "kd-tau",
  "kd-shift",
  "kd-flip",
  "kd-mixup",
  "kd-adv-steps",
  "kd-adv-step-size",
  "kd-adv-fraction",
  "student-epochs",
  "log-every",
]);

function timestamp(): string {
  return new Date().toISOString().replace(/\..*$/, "").replace(/[-:]/g, "").replace("T", "-");
}

const show = (v: unknown) => v === true ? "on" : v === false ? "off" : String(v);

/**
 * Loads the teacher and checks that its weights are finite. `hint` says what to do on failure.
 *
 * @throws {CheckpointError} naming the file, what is wrong and what to do.
 */
async function loadTeacher(
  path: string,
  arch: Architecture | undefined,
  hint: string,
): Promise<Awaited<ReturnType<typeof loadModel>>> {
  let loaded;
  try {
    loaded = await loadModel(path, { arch });
  } catch (e) {
    if (e instanceof CheckpointError) throw new CheckpointError(`${e.message}; ${hint}`);
    throw e;
  }
  const { tensors } = await loadSafetensors(path);
  for (const [name, t] of Object.entries(tensors)) {
    let bad = 0;
    for (const v of t.data) if (!Number.isFinite(v)) bad++;
    if (bad > 0) {
      loaded.model.dispose();
      throw new CheckpointError(
        `${path}: tensor "${name}" holds ${bad} NaN or infinite value(s); the checkpoint is ` +
          `corrupt or its training diverged: ${hint}`,
      );
    }
  }
  return loaded;
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
function checkOutputsSpareInputs(outDir: string, teacherPath: string): void {
  const teacher = realOrResolved(teacherPath);
  for (const entry of [...RUN_ENTRIES, LOCK_FILE]) {
    const out = realOrResolved(join(outDir, entry));
    if (teacher === out || teacher.startsWith(out + "/")) {
      throw new UsageError(
        `--teacher ${teacherPath} is the output folder's ${entry}: this run would overwrite it; ` +
          `copy the teacher out of ${outDir} first, or choose another --out`,
      );
    }
  }
}

/**
 * Checks every setting of a `run.json` against the flag table (type, range, choices), so that a
 * hand-edited or corrupt file is refused before any work starts.
 *
 * @throws {RunFolderError} naming the file, the setting, its value and the allowed values.
 */
function checkRunFile(run: RunFile, dir: string): void {
  const path = join(dir, "run.json");
  const fix = `restore the file, or start the run over with --out ${dir} --force`;
  const c = run.config as unknown as Record<string, unknown>;
  for (const [flag, key] of Object.entries(KEYS)) {
    if (!(key in c)) continue; // an older run: the default applies
    const v = c[key];
    const spec = FLAGS[flag];
    const bad = (want: string) =>
      new RunFolderError(`${path}: "${key}" is ${JSON.stringify(v)}; it must be ${want}; ${fix}`);
    if (spec.choices === onOff) {
      if (typeof v !== "boolean") throw bad("true or false");
    } else if (spec.type === "string") {
      if (typeof v !== "string" || (spec.choices && !spec.choices.includes(v))) {
        throw bad(spec.choices ? `one of ${spec.choices.join(", ")}` : "a string");
      }
    } else {
      const integer = spec.type === "integer";
      if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
        throw bad(integer ? "a whole number" : "a finite number");
      }
      if (spec.min !== undefined && (spec.exclusiveMin ? v <= spec.min : v < spec.min)) {
        throw bad(`${spec.exclusiveMin ? ">" : "≥"} ${spec.min}`);
      }
      if (spec.max !== undefined && v > spec.max) throw bad(`≤ ${spec.max}`);
    }
  }
  if (run.teacher === "") throw new RunFolderError(`${path}: "teacher" is empty; ${fix}`);
  if (parseDatasetName(String(run.dataset)) === null) {
    throw new RunFolderError(
      `${path}: "dataset" is ${JSON.stringify(run.dataset)}; it must be one of ` +
        `${DATASET_NAMES.join(", ")}; ${fix}`,
    );
  }
  if (run.data !== undefined && run.data !== null && typeof run.data !== "string") {
    throw new RunFolderError(`${path}: "data" must be a folder name or null; ${fix}`);
  }
}

/** Where a run's settings come from: a new run's flags, or the run file of the run resumed. */
interface RunPlan {
  outDir: string;
  teacherPath: string;
  /** The run file of the run resumed, or null for a new run. */
  run: RunFile | null;
  cfg: DfkdConfig;
  /** `--flag old → new` for every setting that a resume changes. */
  changed: string[];
}

/** Step 1: the output folder and where the settings come from (cheap checks, no GPU). */
async function planRun(f: ParsedFlags): Promise<RunPlan> {
  const given = (flag: string) => f.explicit.has(flag);
  for (const flag of ["out", "resume", "teacher", "data"]) {
    if (given(flag) && (f[flag] as string).trim() === "") {
      throw new UsageError(`--${flag} needs a path; got an empty string`);
    }
  }
  if (f.resume === undefined) {
    const teacherPath = given("teacher") ? f.teacher as string : DEFAULT_TEACHER;
    const outDir = given("out") ? f.out as string : join("runs", timestamp());
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
    return { outDir, teacherPath, run: null, cfg: { ...DEFAULTS }, changed: [] };
  }
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
      `--resume ${outDir}: the run there is finished (metrics.json); nothing to resume. ` +
        `Start a new run with another --out, or redo it with --out ${outDir} --force`,
    );
  }
  const run = await readRunFile(outDir);
  checkRunFile(run, outDir);
  if (given("teacher") && resolve(f.teacher as string) !== resolve(run.teacher)) {
    throw new UsageError(
      `--teacher ${f.teacher} differs from the teacher of the run in ${outDir} ` +
        `(${run.teacher}); drop --teacher to resume it`,
    );
  }
  checkOutputsSpareInputs(outDir, run.teacher);
  const cfg: DfkdConfig = { ...DEFAULTS, ...run.config };
  const c = cfg as unknown as Record<string, unknown>;
  const changed: string[] = [];
  for (const [flag, key] of Object.entries(KEYS)) {
    const v = flagValue(f, flag);
    if (!given(flag) || v === c[key]) continue;
    if (!RESUME_TUNABLE.has(flag)) {
      throw new UsageError(
        `--${flag} cannot change when resuming: the finished work in ${outDir} used ` +
          `--${flag} ${show(c[key])}; drop --${flag}, or start a new run`,
      );
    }
    changed.push(`--${flag} ${show(c[key])} → ${show(v)}`);
    c[key] = v;
  }
  return { outDir, teacherPath: run.teacher, run, cfg, changed };
}

/** A flag's value with `on`/`off` as booleans. */
function flagValue(f: ParsedFlags, flag: string): unknown {
  return f[flag] === "on" ? true : f[flag] === "off" ? false : f[flag];
}

/**
 * The teacher's dataset: the run file's on resume, else `--dataset`, else the checkpoint's
 * metadata (any usual spelling), else Fashion-MNIST.
 *
 * @throws {UsageError} for an unknown `--dataset`.
 * @throws {CheckpointError} for an unknown dataset in the metadata.
 */
function teacherDataset(
  f: ParsedFlags,
  plan: RunPlan,
  metadata: Record<string, string>,
): DatasetName {
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
  if (metadata.dataset === undefined) return "fashion-mnist";
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
async function openTestSet(
  f: ParsedFlags,
  plan: RunPlan,
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
    return { dir, testSet: await loadSplit(dir, "test") };
  }
  const dir = findDataDir(dataset, f.data as string | undefined);
  if (f.data !== undefined && !dir) throw dataNotFound(dataset, f.data as string);
  return { dir, testSet: dir ? await loadSplit(dir, "test") : null };
}

/** Runs `deno task synth` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(helpText(
      "Usage: deno task synth [flags]",
      "Data-free knowledge distillation (Wang, AAAI 2021): synthesises a transfer set from the\n" +
        "teacher alone, distils a student on it, and reports both networks' accuracy on the real\n" +
        "test set. Writes metrics.json, transfer-set.safetensors, student.safetensors,\n" +
        "samples.png and losses.csv into the output folder. Ctrl-C (or SIGTERM) stops after the\n" +
        "step in progress and keeps finished batches and epochs; --resume DIR continues.",
      FLAGS,
    ));
    return 0;
  }
  const given = (flag: string) => f.explicit.has(flag);

  // 1. The output folder and where the settings come from (cheap checks first).
  const plan = await planRun(f);
  const { outDir, teacherPath, run, cfg, changed } = plan;

  // 2. The GPU and the teacher.
  const gpu = await initGpuForCli();
  const hint = run
    ? `restore the teacher the run in ${outDir} was started with (run.json), or start a new run`
    : "pass --teacher a LeNet-5 checkpoint in safetensors format (make one with " +
      "`deno task train-teacher`; a PyTorch state_dict also needs --arch)";
  const arch = run ? undefined : f.arch as Architecture | undefined;
  const { model: teacher, metadata } = await loadTeacher(teacherPath, arch, hint);
  const sha = await fileSha256(teacherPath);
  if (run?.teacher_sha256 && run.teacher_sha256 !== sha) {
    throw new RunFolderError(
      `--resume ${outDir}: the teacher ${teacherPath} changed since the run started ` +
        `(SHA-256 differs); restore it, or start a new run`,
    );
  }
  const dataset = teacherDataset(f, plan, metadata);

  // 3. The configuration: preset, then explicit flags (a resumed run already has its own).
  if (!run) {
    if (dataset === "mnist") cfg.kdFlip = false; // digits are not mirror-symmetric
    if (f.preset === "paper") Object.assign(cfg, paperPreset(dataset));
    if (f.preset === "large") Object.assign(cfg, largePreset());
    const c = cfg as unknown as Record<string, unknown>;
    for (const [flag, key] of Object.entries(KEYS)) if (given(flag)) c[key] = flagValue(f, flag);
  }
  checkFitsTeacher(cfg, teacher, gpu.maxStorageBufferBindingSize);

  // 4. The real test set, for accuracy only.
  const { dir: dataDir, testSet } = await openTestSet(f, plan, dataset);
  if (testSet) {
    const looks = guessDataset(testSet);
    if (looks !== null && looks !== dataset) {
      console.error(
        `warning: the test set in ${dataDir} looks like ${looks}, not ${dataset} (its mean ` +
          `pixel value); the ${dataset} teacher's accuracy on it will mean little: pass --data ` +
          `the ${dataset} test set`,
      );
    }
  }

  // 5. The output folder, locked for this process.
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
        teacher_sha256: sha,
        dataset,
        data: dataDir ? resolve(dataDir) : null,
      });
    } else if (changed.length > 0) {
      await writeRunFile(outDir, { ...run, config: cfg });
    }
    console.error(`adapter: ${gpu.description}`);
    console.error(`teacher: ${teacherPath} (${teacher.arch}, ${dataset}); output: ${outDir}`);
    if (run) {
      console.error(
        `resuming the run in ${outDir}${changed.length ? `; changed: ${changed.join(", ")}` : ""}`,
      );
    }
    if (!testSet) {
      console.error(
        `no ${dataset} test set found (looked in ${dataDirCandidates(dataset).join(", ")}): ` +
          `accuracy will not be measured; pass --data DIR to measure it`,
      );
    }
    const outcome = await runWithSignals(cfg, outDir, {
      teacher,
      teacherName: teacherPath,
      dataset,
      testSet,
      testSetDir: dataDir,
      adapter: gpu.description,
    });
    if (outcome.stopped) {
      console.error(
        `interrupted: finished work is saved in ${outDir}; continue with --resume ${outDir}`,
      );
      return outcome.signal === "SIGTERM" ? 143 : 130;
    }
    warnTeacherAccuracy(outcome.metrics, metadata, dataset, dataDir);
    printSummary(outcome.metrics, cfg, teacher, outDir);
    return 0;
  } catch (e) {
    if (e instanceof DiskFullError) {
      throw new UsageError(
        `${e.message}; finished batches and epochs are kept: continue with --resume ${outDir}`,
      );
    }
    throw e;
  } finally {
    await unlock();
  }
}

/**
 * Checks the settings against the teacher and the adapter: the modelled layer exists, and the
 * batches fit the adapter's buffer limit.
 *
 * @throws {UsageError} naming the flag and what fits.
 */
function checkFitsTeacher(cfg: DfkdConfig, teacher: Sequential, maxBinding: number): void {
  if (cfg.method === "soft-target") {
    const fc = teacher.layers.filter((l) => l.layer.kind === "linear").map((l) => l.name);
    if (!fc.includes(cfg.layer)) {
      throw new UsageError(
        `--layer ${cfg.layer} is not a fully connected layer of the ${teacher.arch} teacher; ` +
          `choose one of ${fc.join(", ")}`,
      );
    }
  }
  const student = buildModel(cfg.student, 0);
  const perImage = Math.max(bytesPerImage(teacher), bytesPerImage(student));
  student.dispose();
  const maxBatch = Math.floor(maxBinding / perImage);
  const batches = [["batch-size", cfg.batchSize], ["student-batch-size", cfg.studentBatchSize]];
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
 * Runs {@link runDfkd} with a progress bar per phase. Ctrl-C or SIGTERM finishes the step in
 * progress, keeps finished batches and epochs, and returns `stopped`; a second signal exits at
 * once (the finished work is on disk already).
 */
async function runWithSignals(
  cfg: DfkdConfig,
  outDir: string,
  ctx: Omit<RunContext, "onEvent" | "shouldStop">,
): Promise<{ stopped: true; signal: string } | { stopped: false; metrics: RunMetrics }> {
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
      console.error(e.text);
      return;
    }
    if (e.phase !== barPhase) {
      bar?.stop();
      barPhase = e.phase;
      bar = e.phase === "synthesis"
        ? progressBar("synthesis   ", cfg.samples, "samples")
        : progressBar("distillation", e.steps, "steps");
    }
    if (e.phase === "synthesis") {
      bar!.update(Math.floor(e.samplesDone), { loss: e.loss.toFixed(4) });
    } else bar!.update(e.step, { loss: e.loss.toFixed(4) });
  };
  try {
    const outcome = await runDfkd(cfg, outDir, {
      ...ctx,
      onEvent,
      shouldStop: () => signal !== null,
    });
    return outcome.stopped ? { stopped: true, signal: signal ?? "SIGINT" } : outcome;
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
function warnTeacherAccuracy(
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
function printSummary(m: RunMetrics, cfg: DfkdConfig, teacher: Sequential, outDir: string): void {
  const pct = (x: number | null) => x === null ? "not measured" : `${(x * 100).toFixed(2)}%`;
  const rows: [string, string][] = [
    ["method", `${m.method} (layer ${m.layer})`],
    ["teacher", `${teacher.arch}, ${teacher.parameterCount()} parameters`],
    ["student", `${cfg.student}, ${m.student_parameters} parameters`],
    ["transfer set", `${m.transfer_set_size} images × ${m.synthesis_iterations} iterations`],
    ["transfer set check", transferSetCheck(m.transfer_set_stats)],
    ...(cfg.kdAdvSteps > 0
      ? [[
        "KD exploration",
        `${cfg.kdAdvSteps} step(s) of ${cfg.kdAdvStepSize} on ${
          Math.round(cfg.kdAdvFraction * 100)
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

/** One line of the summary: what the teacher makes of the transfer set. */
function transferSetCheck(s: TransferSetStats): string {
  const n = s.teacher_class_counts.reduce((a, b) => a + b, 0);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  return `teacher agrees with ${pct(s.target_agreement)} of soft targets; largest class ${
    pct(Math.max(...s.teacher_class_counts) / n)
  }; ${pct(s.saturated_pixels)} of pixels at 0 or 1`;
}

if (import.meta.main) runMain(main);
