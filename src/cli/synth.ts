/**
 * `deno task synth`: data-free distillation from a teacher checkpoint alone (Wang, AAAI 2021).
 *
 * Synthesises a transfer set from the teacher, distils a student on it, and reports both networks'
 * accuracy on the real test set. See `--help` for every flag.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findDataDir, loadSplit, missingDataMessage } from "../data/datasets.ts";
import { DEFAULTS, type DfkdConfig, METHODS, paperPreset } from "../dfkd/config.ts";
import {
  isFinishedRun,
  readRunConfig,
  runDfkd,
  type RunEvent,
  RunFolderError,
} from "../dfkd/run.ts";
import { initGpu } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { ARCHITECTURES } from "../nn/models.ts";
import { type FlagSpec, helpText, parseFlags, UsageError } from "./flags.ts";
import { runMain } from "./main.ts";
import { type Progress, progressBar } from "./progress.ts";

/** The bundled default teacher (LeNet-5 trained on Fashion-MNIST by this project). */
export const DEFAULT_TEACHER = fileURLToPath(
  new URL("../../examples/teachers/lenet5-fashion-mnist.safetensors", import.meta.url),
);

const D = DEFAULTS;
const onOff = ["on", "off"] as const;
const FLAGS: Record<string, FlagSpec> = {
  teacher: {
    type: "string",
    default: "examples/teachers/lenet5-fashion-mnist.safetensors",
    help: "Teacher checkpoint (safetensors).",
  },
  data: {
    type: "string",
    help:
      "Folder with the real test set's IDX files, for accuracy only (default: standard install paths).",
  },
  out: { type: "string", default: "runs/<date-time>", help: "Output folder." },
  resume: {
    type: "string",
    help: "Continue the interrupted run in this folder (its run.json gives the settings).",
  },
  force: {
    type: "boolean",
    default: false,
    help: "Overwrite an output folder that holds a finished run.",
  },
  preset: {
    type: "string",
    default: "default",
    choices: ["default", "paper"],
    help: "`paper`: the paper's settings and sizes (explicit flags still win).",
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
  samples: { type: "integer", default: D.samples, min: 1, help: "Transfer-set size." },
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
    help: "Random horizontal flips in distillation, relabelled by the teacher.",
  },
  seed: {
    type: "integer",
    default: D.seed,
    min: 0,
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
const KEYS: Record<string, keyof DfkdConfig> = {
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
  student: "student",
  "student-epochs": "studentEpochs",
  "student-lr": "studentLr",
  "student-batch-size": "studentBatchSize",
  "kd-tau": "kdTau",
  "kd-shift": "kdShift",
  "kd-flip": "kdFlip",
  seed: "seed",
  "log-every": "logEvery",
};

function timestamp(): string {
  return new Date().toISOString().replace(/\..*$/, "").replace(/[-:]/g, "").replace("T", "-");
}

runMain(async (args) => {
  const f = parseFlags(args, FLAGS);
  if (f.help) {
    console.log(helpText(
      "Usage: deno task synth [flags]",
      "Data-free knowledge distillation (Wang, AAAI 2021): synthesises a transfer set from the\n" +
        "teacher alone, distils a student on it, and reports both networks' accuracy on the real\n" +
        "test set. Writes metrics.json, transfer-set.safetensors, student.safetensors,\n" +
        "samples.png and losses.csv into the output folder.",
      FLAGS,
    ));
    return 0;
  }
  const ctx = await initGpu();

  // Output folder, teacher and configuration (a resumed run reads its own run.json).
  let outDir: string;
  let cfg: DfkdConfig;
  let teacherPath: string;
  if (f.resume !== undefined) {
    outDir = f.resume as string;
    if (await isFinishedRun(outDir)) {
      throw new RunFolderError(`${outDir} holds a finished run (metrics.json); nothing to resume`);
    }
    cfg = await readRunConfig(outDir);
    teacherPath = JSON.parse(await Deno.readTextFile(join(outDir, "run.json"))).teacher;
  } else {
    teacherPath = f.explicit.has("teacher") ? f.teacher as string : DEFAULT_TEACHER;
    outDir = f.explicit.has("out") ? f.out as string : join("runs", timestamp());
    if (await isFinishedRun(outDir) && !f.force) {
      throw new RunFolderError(
        `${outDir} already holds a finished run; pass --force to overwrite it or choose another --out`,
      );
    }
    cfg = { ...DEFAULTS };
  }
  const { model: teacher, metadata } = await loadModel(teacherPath);
  const dataset = metadata.dataset ?? "fashion-mnist";
  if (f.resume === undefined) {
    if (f.preset === "paper") Object.assign(cfg, paperPreset(dataset));
    for (const [flag, key] of Object.entries(KEYS)) {
      if (!f.explicit.has(flag)) continue;
      const v = f[flag];
      (cfg as unknown as Record<string, unknown>)[key] = v === "on"
        ? true
        : v === "off"
        ? false
        : v;
    }
    if (f.force) await Deno.remove(outDir, { recursive: true }).catch(() => {});
  }
  if (cfg.method !== "noise") {
    teacher.indexOf(cfg.method === "softmax-space" ? teacher.layers.at(-1)!.name : cfg.layer);
  }
  const maxBatch = Math.floor(ctx.maxStorageBufferBindingSize / (6 * 28 * 28 * 4));
  if (cfg.batchSize > maxBatch || cfg.studentBatchSize > maxBatch) {
    throw new UsageError(
      `--batch-size ${
        Math.max(cfg.batchSize, cfg.studentBatchSize)
      } is larger than this adapter's buffer limits allow (at most ${maxBatch})`,
    );
  }

  const dataDir = findDataDir(dataset as "fashion-mnist" | "mnist", f.data as string | undefined);
  if (f.data !== undefined && !dataDir) {
    throw new UsageError(
      `--data ${f.data}: the ${dataset} test files are not there. ${
        missingDataMessage(dataset as "mnist")
      }`,
    );
  }
  const testSet = dataDir ? await loadSplit(dataDir, "test") : null;

  console.error(`adapter: ${ctx.description}`);
  console.error(`teacher: ${teacherPath} (${teacher.arch}, ${dataset}); output: ${outDir}`);
  if (!testSet) {
    console.error(
      `no ${dataset} test set found: accuracy will not be measured. ${
        missingDataMessage(dataset as "mnist")
      }`,
    );
  }

  // Interruption: finish the step in progress, keep finished batches/epochs, exit 130/143.
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
  const outcome = await runDfkd(cfg, outDir, {
    teacher,
    teacherName: teacherPath,
    dataset,
    testSet,
    testSetDir: dataDir,
    adapter: ctx.description,
    onEvent,
    shouldStop: () => signal !== null,
  });
  (bar as Progress | null)?.stop();
  Deno.removeSignalListener("SIGINT", sigint);
  Deno.removeSignalListener("SIGTERM", sigterm);
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
  if (m.student_test_accuracy === null) {
    console.log(
      `\nAccuracy was not measured: no ${dataset} test set was found. ${
        missingDataMessage(dataset as "mnist")
      }`,
    );
  }
  return 0;
});
