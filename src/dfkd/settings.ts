/**
 * Every setting of a data-free distillation run, written once: its configuration key, its
 * command-line flag, type, default, range, help text, stage, and whether resuming a run may change
 * it. From this table come the defaults ({@link DEFAULTS}), the validation that the library and
 * the command-line tools share ({@link validateConfig}), the CLI's flags and `--help`, the resume
 * rules, and the README's flag table. {@link resolveConfig} merges defaults, the dataset's rule,
 * a preset and explicit settings in one place.
 *
 * @module
 */

import { SettingError } from "../errors.ts";
import type { ActivationNorm } from "../ops/loss.ts";
import { type Architecture, ARCHITECTURES } from "../nn/models.ts";

/** How the transfer set is made. */
export type Method = "soft-target" | "softmax-space" | "noise";

/** Every method, for validation. */
export const METHODS: readonly Method[] = ["soft-target", "softmax-space", "noise"];

/** Settings of the synthesis of the transfer set (Wang, AAAI 2021, §3, steps 1–3). */
export interface SynthesisSettings {
  /** `soft-target` (the paper), `softmax-space` (targets sampled at the logits), `noise`. */
  method: Method;
  /** Teacher layer whose pre-activations are modelled (`fc2` by default; `fc3` = logits). */
  layer: string;
  /** σ of the feature-space model. */
  sigma: number;
  /** τ of the soft targets and of the synthesis KL term. */
  tau: number;
  /** λ_a, weight of the activation loss on conv1's output (0 = off). */
  lambdaAct: number;
  /** Normalisation of the activation loss. */
  actNorm: ActivationNorm;
  /** λ_tv, weight of the total-variation prior on the images (0 = off). */
  lambdaTv: number;
  /**
   * Class-balanced soft targets: each image's target class drawn uniformly (by rejection); or
   * `"auto"`: on when a pilot of the feature-space model's samples puts far more than the
   * uniform share of its soft targets in one class (`balancePilot` in `transfer_set.ts`).
   */
  balance: boolean | "auto";
  /** Transfer-set size N. */
  samples: number;
  /** Adam iterations per synthesis batch. */
  iterations: number;
  /**
   * Images per synthesis batch, or `"auto"`: the largest batch that the adapter's limits allow,
   * capped where a larger one does not run faster (see `batch_size.ts`). Synthesis is batch
   * invariant, so this changes the speed only, never the images.
   */
  batchSize: number | "auto";
  /** Adam learning rate on the pixels. */
  lr: number;
  /** Upper bound `b` of the images' initial noise `U(0, b)` (1 = noise over the whole range). */
  initMax: number;
  /** Random circular shifts of up to this many pixels between iterations (0 = off). */
  jitter: number;
  /** Random horizontal flips between iterations. */
  flip: boolean;
  /**
   * Factor of the low-resolution pixel parametrisation: the pixels are optimised at 1/lowRes of
   * the input's height and width and upsampled bilinearly for the teacher (1 = full resolution).
   */
  lowRes: number;
  /** σ in pixels of the Gaussian-blur pixel parametrisation (0 = plain pixels). */
  smooth: number;
}

/** Adversarial exploration in distillation (off when `steps` is 0). */
export interface AdversarialSettings {
  /** Signed-gradient ascent steps per batch (0 = off). */
  steps: number;
  /** Step size in pixel units ([0, 1] scale). */
  stepSize: number;
  /** Share of each batch that is moved, in [0, 1]. */
  fraction: number;
}

/** Settings of the distillation of the student (Hinton et al., 2015, on the transfer set). */
export interface DistillationSettings {
  /** Student architecture. */
  student: Architecture;
  /** Passes over the transfer set. */
  epochs: number;
  /** Images per Adam step. */
  batchSize: number;
  /** Peak Adam learning rate (cosine decay to 1%). */
  lr: number;
  /** KD temperature τ. */
  tau: number;
  /** Random ±2-pixel shifts of each batch, relabelled by the teacher. */
  shift: boolean;
  /** Random horizontal flips of each batch, relabelled by the teacher. */
  flip: boolean;
  /** Mixup of each batch (λ ~ U(0, 1)), relabelled by the teacher. */
  mixup: boolean;
  /** Adversarial exploration. */
  adversarial: AdversarialSettings;
}

/** Everything that determines a run's result, by stage. */
export interface DfkdConfig {
  /** The synthesis of the transfer set. */
  synthesis: SynthesisSettings;
  /** The distillation of the student. */
  distillation: DistillationSettings;
  /** Seed of every random draw. */
  seed: number;
  /** Read losses back every this many steps. */
  logEvery: number;
}

/** A partial configuration: any subset of the settings, by stage. */
export type ConfigOverrides = {
  synthesis?: Partial<SynthesisSettings>;
  distillation?: Partial<Omit<DistillationSettings, "adversarial">> & {
    adversarial?: Partial<AdversarialSettings>;
  };
  seed?: number;
  logEvery?: number;
};

/** The stage a setting belongs to. */
export type Stage = "synthesis" | "distillation" | "run";

/** One setting of {@link SETTINGS}. */
export interface SettingSpec {
  /** Configuration key, dotted by stage: `synthesis.sigma`, `distillation.adversarial.steps`. */
  key: string;
  /** Command-line flag, without `--`. */
  flag: string;
  /** The value's type (an integer is a safe integer). */
  type: "number" | "integer" | "boolean" | "string";
  /** The default value. */
  default: number | boolean | string;
  /** Allowed values of a string. */
  choices?: readonly string[];
  /** Words a number, integer or boolean setting takes besides its values (e.g. `auto`). */
  words?: readonly string[];
  /** Inclusive lower bound (exclusive when `exclusiveMin`). */
  min?: number;
  /** True when `min` itself is not allowed. */
  exclusiveMin?: boolean;
  /** Inclusive upper bound. */
  max?: number;
  /** What it does, for the CLI's help and the README's flag table (keys as flags there). */
  help: string;
  /** The stage it steers. */
  stage: Stage;
  /** Whether resuming a run may change it: true when it only steers work not done yet. */
  resumable: boolean;
  /**
   * The value that runs written before this setting existed ran with, where it is not `default`:
   * a run file without the key is read with it (see {@link storedOverrides}).
   */
  absent?: number | boolean | string;
}

type Spec = Omit<SettingSpec, "stage">;
const synthesis = (s: Spec): SettingSpec => ({ ...s, stage: "synthesis" });
const distillation = (s: Spec): SettingSpec => ({ ...s, stage: "distillation" });
const run = (s: Spec): SettingSpec => ({ ...s, stage: "run" });

/** Every setting, in the order of the CLI's help. */
export const SETTINGS: readonly SettingSpec[] = [
  synthesis({
    key: "synthesis.method",
    flag: "method",
    type: "string",
    default: "soft-target",
    choices: METHODS,
    help: "soft-target (the paper), softmax-space (targets at the logits), noise (no synthesis).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.layer",
    flag: "layer",
    type: "string",
    default: "fc2",
    help: "Teacher layer modelled by the feature-space model (fc1, fc2, fc3 = logits).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.sigma",
    flag: "sigma",
    type: "number",
    default: 6,
    min: 0,
    exclusiveMin: true,
    help: "σ of the feature-space model (paper: 1.5).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.tau",
    flag: "tau",
    type: "number",
    default: 20,
    min: 0,
    exclusiveMin: true,
    help: "Temperature τ of the soft targets and the synthesis KL (paper: 20).",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.lambdaAct",
    flag: "lambda-act",
    type: "number",
    default: 0,
    min: 0,
    help: "λ_a, weight of the activation loss on conv1 (paper: 0.05).",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.actNorm",
    flag: "act-norm",
    type: "string",
    default: "element-mean",
    choices: ["sample-l1", "element-mean"],
    help: "Activation-loss normalisation: the paper's per-sample L1, or the mean over elements.",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.lambdaTv",
    flag: "lambda-tv",
    type: "number",
    default: 0.05,
    min: 0,
    help: "λ_tv, weight of the total-variation image prior in synthesis (0 = off).",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.balance",
    flag: "balance",
    type: "boolean",
    default: false,
    words: ["auto"],
    help: "Class-balanced soft targets: each image's target class is drawn uniformly and its " +
      "feature sample redrawn until the teacher's head gives that class; auto: on when a pilot " +
      "of 2,048 feature samples puts more than 2.4 times the uniform share of its soft targets " +
      "in one class (the choice is in the summary and metrics.json).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.samples",
    flag: "samples",
    type: "integer",
    default: 8000,
    min: 1,
    max: 1_000_000,
    help: "Transfer-set size.",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.iterations",
    flag: "iterations",
    type: "integer",
    default: 200,
    min: 1,
    help: "Adam iterations per synthesis batch.",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.batchSize",
    flag: "batch-size",
    type: "integer",
    words: ["auto"],
    default: "auto",
    min: 1,
    help: "Images per synthesis batch; auto: the most the adapter's limits allow, capped where " +
      "larger batches stop paying (a speed setting only: every image is the same at any batch " +
      "size).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.lr",
    flag: "synth-lr",
    type: "number",
    default: 0.05,
    min: 0,
    exclusiveMin: true,
    help: "Adam learning rate on the pixels.",
    resumable: true,
  }),
  synthesis({
    key: "synthesis.initMax",
    flag: "synth-init",
    type: "number",
    default: 0.1,
    min: 0,
    exclusiveMin: true,
    max: 1,
    help: "Upper bound b of the images' initial noise U(0, b): a dark start keeps the " +
      "background near black, as in the MNIST family, where the pixels get no gradient " +
      "(1 = the full range, as in the paper).",
    resumable: false,
    absent: 1,
  }),
  synthesis({
    key: "synthesis.jitter",
    flag: "synth-jitter",
    type: "integer",
    default: 0,
    min: 0,
    max: 16,
    help: "Random circular shifts of up to this many pixels between synthesis iterations " +
      "(0 = off).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.flip",
    flag: "synth-flip",
    type: "boolean",
    default: false,
    help: "Random horizontal flips between synthesis iterations.",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.lowRes",
    flag: "synth-lowres",
    type: "integer",
    default: 1,
    min: 1,
    max: 8,
    help: "Optimise the pixels at 1/F of the input's height and width, shown to the teacher " +
      "upsampled bilinearly (F must divide them: 1 = full resolution, 2 = 16 × 16 for 32 × 32).",
    resumable: false,
  }),
  synthesis({
    key: "synthesis.smooth",
    flag: "synth-smooth",
    type: "number",
    default: 0,
    min: 0,
    max: 8,
    help: "σ in pixels of a Gaussian-blur pixel parametrisation: images are blur(z), z " +
      "optimised (0 = plain pixels).",
    resumable: false,
  }),
  distillation({
    key: "distillation.student",
    flag: "student",
    type: "string",
    default: "lenet5-half",
    choices: ARCHITECTURES,
    help: "Student architecture.",
    resumable: false,
  }),
  distillation({
    key: "distillation.epochs",
    flag: "student-epochs",
    type: "integer",
    default: 70,
    min: 1,
    help: "Distillation epochs over the transfer set.",
    resumable: true,
  }),
  distillation({
    key: "distillation.lr",
    flag: "student-lr",
    type: "number",
    default: 0.002,
    min: 0,
    exclusiveMin: true,
    help: "Peak Adam learning rate of the student (cosine decay).",
    resumable: true,
  }),
  distillation({
    key: "distillation.batchSize",
    flag: "student-batch-size",
    type: "integer",
    default: 128,
    min: 1,
    help: "Images per distillation step.",
    resumable: false,
  }),
  distillation({
    key: "distillation.tau",
    flag: "kd-tau",
    type: "number",
    default: 2,
    min: 0,
    exclusiveMin: true,
    help: "Temperature of the KD loss (paper: 20).",
    resumable: true,
  }),
  distillation({
    key: "distillation.shift",
    flag: "kd-shift",
    type: "boolean",
    default: true,
    help: "Random ±2-pixel shifts in distillation, relabelled by the teacher.",
    resumable: true,
  }),
  distillation({
    key: "distillation.flip",
    flag: "kd-flip",
    type: "boolean",
    default: true,
    help: "Random horizontal flips in distillation, relabelled by the teacher (off for an " +
      "MNIST teacher unless given: digits are not mirror-symmetric).",
    resumable: true,
  }),
  distillation({
    key: "distillation.mixup",
    flag: "kd-mixup",
    type: "boolean",
    default: true,
    help: "Mixup of distillation batches (λ ~ U(0, 1)), relabelled by the teacher.",
    resumable: true,
  }),
  distillation({
    key: "distillation.adversarial.steps",
    flag: "kd-adv-steps",
    type: "integer",
    default: 1,
    min: 0,
    max: 100,
    help: "Signed-gradient ascent steps that move part of each distillation batch toward where " +
      "student and teacher disagree, before the teacher relabels it (0 = off).",
    resumable: true,
  }),
  distillation({
    key: "distillation.adversarial.stepSize",
    flag: "kd-adv-step-size",
    type: "number",
    default: 0.05,
    min: 0,
    max: 1,
    help: "Size of each of those steps, in pixel units ([0, 1] scale); used only with " +
      "distillation.adversarial.steps above 0.",
    resumable: true,
  }),
  distillation({
    key: "distillation.adversarial.fraction",
    flag: "kd-adv-fraction",
    type: "number",
    default: 0.5,
    min: 0,
    max: 1,
    help: "Share of each distillation batch that takes those steps; used only with " +
      "distillation.adversarial.steps above 0.",
    resumable: true,
  }),
  run({
    key: "seed",
    flag: "seed",
    type: "integer",
    default: 0,
    min: 0,
    max: Number.MAX_SAFE_INTEGER - 1,
    help: "Seed of every random draw (same seed, same adapter: same result).",
    resumable: false,
  }),
  run({
    key: "logEvery",
    flag: "log-every",
    type: "integer",
    default: 10,
    min: 1,
    help: "Read the loss back every this many steps.",
    resumable: true,
  }),
];

/** The setting of configuration key `key`, or undefined. */
export function settingOf(key: string): SettingSpec | undefined {
  return SETTINGS.find((s) => s.key === key);
}

/** The value at dotted `key` of `obj` (undefined where a level is missing). */
export function getSetting(obj: unknown, key: string): unknown {
  let v: unknown = obj;
  for (const part of key.split(".")) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Sets the value at dotted `key` of `obj`, creating levels as needed. */
export function setSetting(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split(".");
  let o = obj;
  for (const part of parts.slice(0, -1)) {
    if (typeof o[part] !== "object" || o[part] === null) o[part] = {};
    o = o[part] as Record<string, unknown>;
  }
  o[parts.at(-1)!] = value;
}

/**
 * The settings stored in a run file (run.json's `config`), with every key the file lacks because
 * the run predates the setting filled with the value that run ran with (the setting's `absent`);
 * keys without one are left to today's default. `stored` is not changed.
 */
export function storedOverrides(stored: ConfigOverrides): ConfigOverrides {
  const out = structuredClone(stored) as Record<string, unknown>;
  for (const s of SETTINGS) {
    if (s.absent === undefined || getSetting(out, s.key) !== undefined) continue;
    // only where the key's level is an object or missing: anything else is left to validation
    const parent = getSetting(out, s.key.split(".").slice(0, -1).join("."));
    if (parent === undefined || (typeof parent === "object" && parent !== null)) {
      setSetting(out, s.key, s.absent);
    }
  }
  return out as ConfigOverrides;
}

/** A fresh copy of the defaults. */
function defaults(): DfkdConfig {
  const cfg: Record<string, unknown> = {};
  for (const s of SETTINGS) setSetting(cfg, s.key, s.default);
  return cfg as unknown as DfkdConfig;
}

/** The defaults of every setting (those of `deno task synth`), built from {@link SETTINGS}. */
export const DEFAULTS: Readonly<DfkdConfig> = deepFreeze(defaults());

function deepFreeze<T>(o: T): T {
  for (const v of Object.values(o as object)) if (typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}

/** What `want` the allowed values of `s` are, for messages. */
export function allowedValues(s: SettingSpec): string {
  if (s.type === "boolean") {
    const words = (s.words ?? []).map((w) => JSON.stringify(w));
    return words.length ? `true, false or ${words.join(" or ")}` : "true or false";
  }
  if (s.choices) return `one of ${s.choices.join(", ")}`;
  if (s.type === "string") return "a string";
  const bounds = [
    s.min === undefined ? "" : `${s.exclusiveMin ? ">" : "≥"} ${s.min}`,
    s.max === undefined ? "" : `≤ ${s.max}`,
  ].filter((b) => b !== "").join(" and ");
  const kind = s.type === "integer" ? "a whole number" : "a finite number";
  const words = s.words?.length ? `, or ${s.words.join(", or ")}` : "";
  return (bounds ? `${kind} ${bounds}` : kind) + words;
}

/** Whether `v` is an allowed value of `s`. */
export function isAllowed(s: SettingSpec, v: unknown): boolean {
  if (s.type === "boolean") {
    return typeof v === "boolean" || (typeof v === "string" && s.words?.includes(v) === true);
  }
  if (s.type === "string") {
    return typeof v === "string" && (!s.choices || s.choices.includes(v));
  }
  if (typeof v === "string" && s.words?.includes(v)) return true;
  if (typeof v !== "number" || !Number.isFinite(v)) return false;
  if (s.type === "integer" && !Number.isSafeInteger(v)) return false;
  if (s.min !== undefined && (s.exclusiveMin ? v <= s.min : v < s.min)) return false;
  return s.max === undefined || v <= s.max;
}

/**
 * Checks every setting of `cfg` against {@link SETTINGS} (type, range, choices) and that it holds
 * no unknown setting.
 *
 * @throws {SettingError} naming the first bad setting's key, its value and what is allowed.
 */
export function validateConfig(cfg: unknown): asserts cfg is DfkdConfig {
  for (const s of SETTINGS) {
    const v = getSetting(cfg, s.key);
    if (!isAllowed(s, v)) {
      throw new SettingError(
        s.key,
        `${s.key} must be ${allowedValues(s)}; got ${
          v === undefined ? "nothing" : JSON.stringify(v)
        }`,
      );
    }
  }
  checkKnownKeys(cfg);
}

/**
 * Checks that the low-resolution factor of the pixel parametrisation divides the teacher's input
 * height and width (`inputShape` is `[C, H, W]`).
 *
 * @throws {SettingError} naming `synthesis.lowRes` and the factors that do.
 */
export function checkLowRes(lowRes: number, inputShape: readonly number[]): void {
  const [, h, w] = inputShape;
  if (h % lowRes === 0 && w % lowRes === 0) return;
  const max = SETTINGS.find((x) => x.key === "synthesis.lowRes")?.max ?? lowRes;
  const fit = Array.from({ length: max }, (_, i) => i + 1).filter((f) =>
    h % f === 0 && w % f === 0
  );
  throw new SettingError(
    "synthesis.lowRes",
    `synthesis.lowRes ${lowRes} does not divide the teacher's ${h} × ${w} input; use one of ` +
      fit.join(", "),
  );
}

/** The presets: `default`, `quick`, `large` and `paper`. */
export const PRESETS = ["default", "quick", "large", "paper"] as const;
/** A preset's name. */
export type Preset = typeof PRESETS[number];

/**
 * The settings a preset changes. `quick`: the whole pipeline at a small size (2,000 samples × 30
 * iterations, 30 KD epochs), a first run of about a minute on a CPU. `large`: the defaults at
 * three times the transfer set (24,000 samples), 100 iterations and 100 KD epochs. `paper`: the
 * paper's settings (Wang, AAAI 2021, with ZSKD's synthesis sizes): σ 1.5, τ 20, λ_a 0.05 with the
 * per-sample L1 norm, 1,500 Adam iterations at lr 0.001 from U(0, 1) noise on plain full-resolution
 * pixels, no image prior, 200 KD epochs at τ 20, no augmentation; 48,000 samples for Fashion-MNIST
 * and 24,000 for MNIST. (ZSKD's batches of 100 are not set: synthesis is batch invariant, so the
 * batch size changes only the speed.)
 */
export function presetOverrides(preset: Preset, dataset: string): ConfigOverrides {
  switch (preset) {
    case "default":
      return {};
    case "quick":
      return { synthesis: { samples: 2000, iterations: 30 }, distillation: { epochs: 30 } };
    case "large":
      return { synthesis: { samples: 24000, iterations: 100 }, distillation: { epochs: 100 } };
    case "paper":
      return {
        synthesis: {
          layer: "fc2",
          sigma: 1.5,
          tau: 20,
          lambdaAct: 0.05,
          actNorm: "sample-l1",
          lambdaTv: 0,
          balance: false,
          samples: dataset === "mnist" ? 24000 : 48000,
          iterations: 1500,
          lr: 0.001,
          initMax: 1,
          jitter: 0,
          flip: false,
          lowRes: 1,
          smooth: 0,
        },
        distillation: {
          epochs: 200,
          tau: 20,
          shift: false,
          flip: false,
          mixup: false,
          adversarial: { steps: 0 },
        },
      };
  }
}

/** Merges `over` into `cfg` in place, setting by setting. */
function apply(cfg: DfkdConfig, over: ConfigOverrides | undefined): void {
  for (const s of SETTINGS) {
    const v = getSetting(over, s.key);
    if (v !== undefined) setSetting(cfg as unknown as Record<string, unknown>, s.key, v);
  }
}

/** What {@link resolveConfig} merges. */
export interface ResolveOptions {
  /** A preset (default `"default"`). */
  preset?: Preset;
  /** The teacher's dataset: an MNIST teacher gets no KD flips unless they are given. */
  dataset?: string;
  /** Explicit settings; they win over the preset and the dataset's rule. */
  overrides?: ConfigOverrides;
}

/**
 * The configuration of a run, resolved in one place: the defaults, then the dataset's rule (no
 * horizontal flips in distillation for MNIST: digits are not mirror-symmetric), then the preset,
 * then the explicit settings; the result is validated.
 *
 * @throws {SettingError} for an unknown preset or a setting outside its range.
 */
export function resolveConfig(opts: ResolveOptions = {}): DfkdConfig {
  const preset = opts.preset ?? "default";
  if (!PRESETS.includes(preset)) {
    throw new SettingError("preset", `preset must be one of ${PRESETS.join(", ")}; got ${preset}`);
  }
  const cfg = defaults();
  if (opts.dataset === "mnist") cfg.distillation.flip = false;
  apply(cfg, presetOverrides(preset, opts.dataset ?? "fashion-mnist"));
  const over = opts.overrides ?? {};
  checkKnownKeys(over);
  apply(cfg, over);
  validateConfig(cfg);
  return cfg;
}

/** @throws {SettingError} for a key of `obj` that names no setting. */
function checkKnownKeys(obj: unknown): void {
  const known = new Set(SETTINGS.map((s) => s.key));
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix + k;
      if (v === undefined || known.has(key)) continue;
      if (
        typeof v === "object" && v !== null && SETTINGS.some((s) => s.key.startsWith(key + "."))
      ) {
        walk(v as Record<string, unknown>, key + ".");
      } else throw new SettingError(key, `unknown setting ${key}`);
    }
  };
  walk(obj as Record<string, unknown>, "");
}
