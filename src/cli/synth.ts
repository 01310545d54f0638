/**
 * `deno task synth`: data-free distillation from a teacher checkpoint alone (Wang, AAAI 2021).
 *
 * Synthesises a transfer set from the teacher, distils a student on it, and reports both networks'
 * accuracy on the real test set. See `--help` for every flag.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  dataDirCandidates,
  DATASET_NAMES,
  type DatasetName,
  findDataDir,
  loadSplit,
} from "../data/datasets.ts";
import { DEFAULTS, type DfkdConfig, largePreset, METHODS, paperPreset } from "../dfkd/config.ts";
import type { TransferSetStats } from "../dfkd/diagnostics.ts";
import {
  clearRunFolder,
  fileSha256,
  hasRun,
  isFinishedRun,
  readRunFile,
  runDfkd,
  type RunEvent,
  type RunFile,
  RunFolderError,
  writeRunFile,
} from "../dfkd/run.ts";
import type { Sequential } from "../nn/layers.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { ARCHITECTURES, buildModel } from "../nn/models.ts";
import { CheckpointError, loadSafetensors } from "../nn/safetensors.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
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
    min: 0,
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
  hint: string,
): Promise<Awaited<ReturnType<typeof loadModel>>> {
  let loaded;
  try {
    loaded = await loadModel(path);
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
  const value = (flag: string) => f[flag] === "on" ? true : f[flag] === "off" ? false : f[flag];

  // 1. The output folder and where the settings come from (cheap checks first).
  let outDir: string;
  let teacherPath: string;
  let run: RunFile | null = null;
  const changed: string[] = [];
  let cfg: DfkdConfig;
  if (f.resume !== undefined) {
    outDir = f.resume as string;
    if (given("force")) {
      throw new UsageError(
        `--force cannot be combined with --resume; to start ${outDir} over, drop --resume`,
      );
    }
    if (given("preset")) {
      throw new UsageError(
        `--preset applies to new runs only; the run in ${outDir} keeps its settings (run.json)`,
      );
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
    run = await readRunFile(outDir);
    teacherPath = run.teacher;
    if (given("teacher") && resolve(f.teacher as string) !== resolve(run.teacher)) {
      throw new UsageError(
        `--teacher ${f.teacher} differs from the teacher of the run in ${outDir} ` +
          `(${run.teacher}); drop --teacher to resume it`,
      );
    }
    cfg = { ...DEFAULTS, ...run.config };
    const c = cfg as unknown as Record<string, unknown>;
    for (const [flag, key] of Object.entries(KEYS)) {
      if (!given(flag) || value(flag) === c[key]) continue;
      if (!RESUME_TUNABLE.has(flag)) {
        throw new UsageError(
          `--${flag} cannot change when resuming: the finished work in ${outDir} used ` +
            `--${flag} ${show(c[key])}; drop --${flag}, or start a new run`,
        );
      }
      changed.push(`--${flag} ${show(c[key])} → ${show(value(flag))}`);
      c[key] = value(flag);
    }
  } else {
    teacherPath = given("teacher") ? f.teacher as string : DEFAULT_TEACHER;
    outDir = given("out") ? f.out as string : join("runs", timestamp());
    if (!f.force && await isFinishedRun(outDir)) {
      throw new RunFolderError(
        `--out ${outDir} already holds a finished run; pass --force to overwrite it or choose ` +
          `another --out`,
      );
    }
    if (!f.force && await hasRun(outDir)) {
      throw new RunFolderError(
        `--out ${outDir} holds an unfinished run; continue it with --resume ${outDir}, or pass ` +
          `--force to start over`,
      );
    }
    cfg = { ...DEFAULTS };
  }

  // 2. The GPU and the teacher.
  const gpu = await initGpuForCli();
  const hint = run
    ? `restore the teacher the run in ${outDir} was started with (run.json), or start a new run`
    : "pass --teacher a LeNet-5 checkpoint in safetensors format (make one with " +
      "`deno task train-teacher`)";
  const { model: teacher, metadata } = await loadTeacher(teacherPath, hint);
  const sha = await fileSha256(teacherPath);
  if (run?.teacher_sha256 && run.teacher_sha256 !== sha) {
    throw new RunFolderError(
      `--resume ${outDir}: the teacher ${teacherPath} changed since the run started ` +
        `(SHA-256 differs); restore it, or start a new run`,
    );
  }
  const dataset = (run?.dataset ?? metadata.dataset ?? "fashion-mnist") as DatasetName;
  if (!DATASET_NAMES.includes(dataset)) {
    throw new CheckpointError(
      `${teacherPath}: the checkpoint's metadata names dataset "${dataset}"; this tool knows ` +
        `${DATASET_NAMES.join(", ")}: set "dataset" in its __metadata__ to one of them`,
    );
  }

  // 3. The configuration: preset, then explicit flags (a resumed run already has its own).
  if (!run) {
    if (dataset === "mnist") cfg.kdFlip = false; // digits are not mirror-symmetric
    if (f.preset === "paper") Object.assign(cfg, paperPreset(dataset));
    if (f.preset === "large") Object.assign(cfg, largePreset());
    const c = cfg as unknown as Record<string, unknown>;
    for (const [flag, key] of Object.entries(KEYS)) if (given(flag)) c[key] = value(flag);
  }
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
  const maxBatch = Math.floor(gpu.maxStorageBufferBindingSize / perImage);
  for (
    const [flag, bs] of [["batch-size", cfg.batchSize], [
      "student-batch-size",
      cfg.studentBatchSize,
    ]] as const
  ) {
    if (bs > maxBatch) {
      throw new UsageError(
        `--${flag} ${bs} is larger than this adapter's buffer limits allow (at most ` +
          `${maxBatch} images: ${gpu.maxStorageBufferBindingSize} bytes per buffer); use a ` +
          `smaller --${flag}`,
      );
    }
  }

  // 4. The real test set, for accuracy only.
  const dataDir = findDataDir(dataset, f.data as string | undefined);
  if (f.data !== undefined && !dataDir) throw dataNotFound(dataset, f.data as string);
  const testSet = dataDir ? await loadSplit(dataDir, "test") : null;

  // 5. The output folder.
  if (!run && f.force) await clearRunFolder(outDir);
  try {
    await Deno.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new UsageError(
      `--out ${outDir}: cannot create the folder (${(e as Error).message}); choose a writable one`,
    );
  }
  if (!run) {
    await writeRunFile(outDir, {
      config: cfg,
      teacher: resolve(teacherPath),
      teacher_sha256: sha,
      dataset,
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

  // Interruption: finish the step in progress, keep finished batches/epochs, exit 130/143.
  // A second signal exits at once (the finished batches and epochs are on disk already).
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
  let outcome;
  try {
    outcome = await runDfkd(cfg, outDir, {
      teacher,
      teacherName: teacherPath,
      dataset,
      testSet,
      testSetDir: dataDir,
      adapter: gpu.description,
      onEvent,
      shouldStop: () => signal !== null,
    });
  } finally {
    (bar as Progress | null)?.stop();
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
  }
  if (outcome.stopped) {
    console.error(
      `interrupted: finished work is saved in ${outDir}; continue with --resume ${outDir}`,
    );
    return signal === "SIGTERM" ? 143 : 130;
  }
  const m = outcome.metrics;
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
  return 0;
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
