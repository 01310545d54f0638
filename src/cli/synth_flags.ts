/**
 * The flags of `deno task synth`: the run's own (teacher, data, output folder, preset), then one
 * per setting of the settings schema (`src/dfkd/settings.ts`), with the schema's default, range and
 * help. Also the translation the other way: messages of the library name settings by their keys
 * (`synthesis.lr`), and the CLI shows them as flags (`--synth-lr`).
 *
 * @module
 */

import { DfkdError, NumericalError } from "../errors.ts";
import {
  type ConfigOverrides,
  PRESETS,
  setSetting,
  SETTINGS,
  type SettingSpec,
} from "../dfkd/settings.ts";
import { ARCHITECTURES } from "../nn/models.ts";
import { flagArgument, type FlagSpec, type ParsedFlags } from "./flags.ts";

const ON_OFF = ["on", "off"] as const;

/** The flags that are not settings of the run. */
const RUN_FLAGS: Record<string, FlagSpec> = {
  teacher: {
    type: "string",
    default: "examples/teachers/lenet5-fashion-mnist.safetensors",
    help: "Teacher checkpoint (safetensors).",
  },
  arch: {
    type: "string",
    defaultText: "the checkpoint's metadata, else the one its tensor shapes fit",
    choices: ARCHITECTURES,
    help: "Architecture of the teacher, for a checkpoint whose metadata names none and whose " +
      "tensor shapes do not tell (PyTorch module names, e.g. features.0 / classifier.4, are " +
      "mapped in order).",
  },
  dataset: {
    type: "string",
    defaultText: "the checkpoint's metadata, else what the --data test set looks like, else " +
      "fashion-mnist",
    help: "Dataset the teacher was trained on: fashion-mnist or mnist (usual spellings such as " +
      "fmnist, FashionMNIST, MNIST are accepted).",
  },
  data: {
    type: "string",
    defaultText: "searched: $DFKD_DATA_DIR[/<dataset>], /usr/share/datasets/<dataset>, " +
      "~/.cache/dfkd/<dataset>, ./data/<dataset>",
    help: "Folder with the real test set's IDX files, for accuracy only.",
  },
  judge: {
    type: "string",
    defaultText: "none",
    help: "An independent classifier of the same dataset (e.g. another teacher): the run " +
      "reports how many of the transfer set's soft-target classes it agrees with.",
  },
  out: { type: "string", default: "runs/<date-time>", help: "Output folder." },
  resume: {
    type: "string",
    defaultText: "none: start a new run",
    help: "Continue the interrupted run in this folder (its run.json gives the settings; " +
      `${
        SETTINGS.filter((s) => s.resumable).map((s) => `--${s.flag}`).join(", ")
      } may be changed for the work left).`,
  },
  shard: {
    type: "string",
    defaultText: "$JOB_COMPLETION_INDEX of $DFKD_SHARD_COUNT, or the Slurm array task; else none",
    help: "Make only shard i/n of the transfer set (a contiguous slice, the same images as in an " +
      "unsharded run) in its own folder, and stop before distillation; `deno task merge` " +
      "assembles the shards and distils (docs/sharding.md).",
  },
  force: {
    type: "boolean",
    default: false,
    help: "Overwrite an output folder that holds a finished run.",
  },
  preset: {
    type: "string",
    default: "default",
    choices: PRESETS,
    help: "`quick`: 2,000 samples × 30 iterations and 30 KD epochs, a first run of about a " +
      "minute; `large`: the defaults with 24,000 samples × 100 iterations and 100 KD epochs; `paper`: the " +
      "paper's settings and sizes. Explicit flags win over the preset.",
  },
};

/** The flag of a setting: booleans are `on`/`off`; the rest as the schema says. */
function flagSpecOf(s: SettingSpec): FlagSpec {
  const bool = s.type === "boolean";
  return {
    type: bool ? "string" : s.type,
    default: bool && typeof s.default === "boolean" ? (s.default ? "on" : "off") : s.default,
    choices: bool ? [...ON_OFF, ...(s.words ?? [])] : s.choices,
    words: bool ? undefined : s.words,
    min: s.min,
    max: s.max,
    exclusiveMin: s.exclusiveMin,
    help: inFlagTerms(s.help),
  };
}

/** Every flag of `deno task synth`, with its default and help text. */
export const FLAGS: Record<string, FlagSpec> = {
  ...RUN_FLAGS,
  ...Object.fromEntries(SETTINGS.map((s) => [s.flag, flagSpecOf(s)])),
};

/** The value of a setting's flag in configuration terms (`on`/`off` → true/false). */
export function flagValue(f: ParsedFlags, s: SettingSpec): unknown {
  const v = f[s.flag];
  if (s.type !== "boolean" || s.words?.includes(v as string)) return v;
  return v === "on";
}

/** The settings given explicitly on the command line, as configuration overrides. */
export function overridesFromFlags(f: ParsedFlags): ConfigOverrides {
  const over: Record<string, unknown> = {};
  for (const s of SETTINGS) if (f.explicit.has(s.flag)) setSetting(over, s.key, flagValue(f, s));
  return over as ConfigOverrides;
}

/** `text` with every dotted setting key (`synthesis.lr`) shown as its flag (`--synth-lr`). */
export function inFlagTerms(text: string): string {
  let out = text;
  const dotted = SETTINGS.filter((s) => s.key.includes(".")).sort((a, b) =>
    b.key.length - a.key.length
  );
  for (const s of dotted) out = out.replaceAll(s.key, `--${s.flag}`);
  return out;
}

/**
 * An error of the library as the CLI shows it: settings as flags, and where finished work was
 * kept, how to continue (for a loss that overflowed, with the suggested flag).
 */
export function asCliError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  let msg = inFlagTerms(e.message);
  if (e instanceof DfkdError && e.resumeDir) {
    msg += `; continue with --resume ${e.resumeDir}`;
    if (e instanceof NumericalError) msg += ", adding the flag suggested above";
  }
  e.message = msg;
  return e;
}

/**
 * The README's flag table: every flag of `deno task synth` with its default and help, the run's
 * own flags first, then the settings in schema order. A test keeps the README's copy equal to it.
 */
export function flagTableMarkdown(): string {
  const rows = Object.entries(FLAGS).map(([name, s]) => {
    const arg = s.type === "boolean" ? "" : ` ${flagArgument(s).replaceAll("|", "\\|")}`;
    const cell = (x: string) => x.replaceAll("|", "\\|").replaceAll("<", "&lt;");
    const def = s.defaultText !== undefined
      ? cell(s.defaultText)
      : s.default === undefined
      ? ""
      : `\`${s.default}\``;
    return `| \`--${name}${arg}\` | ${def} | ${cell(s.help)} |`;
  });
  return ["| flag | default | meaning |", "| --- | --- | --- |", ...rows].join("\n");
}

if (import.meta.main) console.log(flagTableMarkdown());
