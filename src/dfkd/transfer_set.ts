/**
 * One batch of the transfer set: the single place where a batch of synthetic images and its soft
 * targets is made (the stage that loops over batches is `pipeline.ts`).
 *
 * @module
 */

import { noGrad } from "../autograd/tape.ts";
import type { Sequential } from "../nn/layers.ts";
import { CheckpointError, SettingError } from "../errors.ts";
import { checkNonZeroWeights } from "../nn/checkpoint.ts";
import type { HostTensor } from "../nn/safetensors.ts";
import { softmax } from "../ops/softmax.ts";
import { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import type { SynthesisSettings } from "./settings.ts";
import { buildFeatureModel, type FeatureModel, sampleFeatures } from "./feature_model.ts";
import { softTargets } from "./soft_targets.ts";
import { targetClass } from "./diagnostics.ts";
import { synthesizeBatch } from "./synthesis.ts";

/**
 * The generators of images `first … first + n − 1` of the transfer set of seed `seed`: image i's
 * is `new Rng(seed).fork("synthesis-image-i")`, whatever batch or shard it is synthesised in.
 */
export function imageGenerators(seed: number, first: number, n: number): Rng[] {
  const root = new Rng(seed);
  return Array.from({ length: n }, (_, j) => root.fork(`synthesis-image-${first + j}`));
}

/**
 * One batch of the transfer set: sample one pre-activation of the feature model's layer per
 * image, turn them into soft targets at τ, and optimise noise images toward them (Wang, AAAI
 * 2021, §3, steps 1–3). With no feature model (the `noise` baseline) the images are unoptimised
 * uniform noise labelled by the teacher at τ.
 *
 * Image j's random draws come from its own generator `rngs[j]` (its `features`, `pixels` and
 * `jitter` forks; see {@link imageGenerators}), so an image is the same in any batch.
 * `cfg.balance` is resolved (`"auto"` decided by {@link balancePilot}).
 *
 * @returns images `[n, ...inputShape]` in [0, 1], soft targets `[n, classes]` and the final
 *   loss; `null` when `shouldStop` turned true.
 * @throws {NumericalError} when the synthesis loss becomes NaN or infinite.
 */
export async function synthesizeTransferBatch(
  teacher: Sequential,
  fm: FeatureModel | null,
  cfg: SynthesisSettings & { balance: boolean },
  logEvery: number,
  rngs: readonly Rng[],
  onLog: (iteration: number, loss: number) => void,
  shouldStop?: () => boolean,
): Promise<{ images: Float32Array; targets: Float32Array; loss: number } | null> {
  const n = rngs.length;
  if (!fm) {
    // The `noise` baseline: unoptimised uniform noise, labelled by the teacher at τ.
    const per = teacher.inputShape.reduce((a, b) => a * b, 1);
    const images = new Float32Array(n * per);
    rngs.forEach((r, j) => r.fork("pixels").fillUniform(images.subarray(j * per, (j + 1) * per)));
    const probs = tidy(() =>
      noGrad(() =>
        softmax(teacher.forward(Tensor.from(images, [n, ...teacher.inputShape])), cfg.tau)
      )
    );
    const targets = await probs.read();
    probs.dispose();
    return { images, targets, loss: 0 };
  }
  const samples = cfg.balance
    ? await classBalancedFeatures(teacher, fm, rngs)
    : new Float32Array(n * fm.k);
  if (!cfg.balance) {
    rngs.forEach((r, j) => samples.set(sampleFeatures(fm, 1, r.fork("features")), j * fm.k));
  }
  const y = softTargets(teacher, fm.layer, samples, n, cfg.tau);
  try {
    const res = await synthesizeBatch(
      teacher,
      y,
      rngs,
      { ...cfg, logEvery },
      (l) => onLog(l.iteration, l.loss),
      shouldStop,
    );
    if (!res) return null;
    return { images: res.images, targets: await y.read(), loss: res.loss };
  } finally {
    y.dispose();
  }
}

/** Feature-space samples of {@link balancePilot}. */
export const PILOT_SAMPLES = 2048;
/**
 * {@link balancePilot} turns class balance on above this many times the uniform share of the
 * largest class (between the panel's teachers: `bench/results/panel.md`).
 */
export const PILOT_SKEW = 2.4;

/** What {@link balancePilot} found and chose. */
export interface BalancePilot {
  /** Share of the pilot's soft targets in their most frequent class, in [0, 1]. */
  largestShare: number;
  /** The share above which balance turns on: `PILOT_SKEW / classes`. */
  limit: number;
  /** The pilot's draws, {@link PILOT_SAMPLES}. */
  samples: number;
  /** Whether class-balanced soft targets are used: `largestShare > limit`. */
  balance: boolean;
}

/**
 * Probes how evenly the feature-space model spreads its soft targets over the classes:
 * {@link PILOT_SAMPLES} samples from `new Rng(seed).fork("balance-pilot")`, the class of each
 * (top-1 of the teacher's head), and the share of the most frequent one. Class-balanced targets
 * are chosen when it exceeds {@link PILOT_SKEW} times the uniform share. Depends on the teacher
 * and the seed only, so every shard and every resumption of a run decides the same.
 */
export async function balancePilot(
  teacher: Sequential,
  fm: FeatureModel,
  seed: number,
): Promise<BalancePilot> {
  const classes = teacher.shapes(1).at(-1)!.shape[1];
  const samples = sampleFeatures(fm, PILOT_SAMPLES, new Rng(seed).fork("balance-pilot"));
  const y = softTargets(teacher, fm.layer, samples, PILOT_SAMPLES, 1);
  const probs = await y.read().finally(() => y.dispose());
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < PILOT_SAMPLES; i++) counts[targetClass(probs, i, classes)]++;
  const largestShare = Math.max(...counts) / PILOT_SAMPLES;
  const limit = PILOT_SKEW / classes;
  return { largestShare, limit, samples: PILOT_SAMPLES, balance: largestShare > limit };
}

/**
 * `synthesis.balance` resolved for `teacher`: as given when true or false; `"auto"` decided by
 * {@link balancePilot}; never on for the noise method (no feature model, `fm` null), whose
 * targets are the teacher's predictions on noise.
 */
export async function resolveBalance(
  teacher: Sequential,
  fm: FeatureModel | null,
  s: Pick<SynthesisSettings, "balance">,
  seed: number,
): Promise<{ balance: boolean; pilot: BalancePilot | null }> {
  if (!fm) return { balance: false, pilot: null }; // the noise method: nothing to balance
  if (s.balance !== "auto") return { balance: s.balance, pilot: null };
  const pilot = await balancePilot(teacher, fm, seed);
  return { balance: pilot.balance, pilot };
}

/** Candidates per image and round of {@link classBalancedFeatures}. */
const CANDIDATES = 16;
/** Rounds of {@link classBalancedFeatures} before an image keeps its last candidate. */
const ROUNDS = 64;

/**
 * Class-balanced pre-activations: image j wants a class drawn uniformly from its own generator
 * (`rngs[j].fork("class")`) and takes the first sample of its `features` stream whose soft
 * target has that class (its top-1), so every class gets about `n / classes` targets whatever
 * classes the feature-space model favours. Candidates are drawn {@link CANDIDATES} at a time per
 * image still waiting; after {@link ROUNDS} rounds an image keeps its last candidate (a class the
 * model almost never produces). Each image's result depends on its generator alone.
 *
 * @returns `[n, k]` row-major pre-activations of the feature model's layer.
 */
export async function classBalancedFeatures(
  teacher: Sequential,
  fm: FeatureModel,
  rngs: readonly Rng[],
): Promise<Float32Array> {
  const { k } = fm;
  const classes = teacher.shapes(1).at(-1)!.shape[1];
  const wanted = rngs.map((r) => r.fork("class").int(classes));
  const streams = rngs.map((r) => r.fork("features"));
  const out = new Float32Array(rngs.length * k);
  let waiting = rngs.map((_, j) => j);
  for (let round = 1; waiting.length > 0; round++) {
    const m = waiting.length * CANDIDATES;
    const candidates = new Float32Array(m * k);
    waiting.forEach((j, w) => {
      candidates.set(sampleFeatures(fm, CANDIDATES, streams[j]), w * CANDIDATES * k);
    });
    const y = softTargets(teacher, fm.layer, candidates, m, 1);
    const probs = await y.read().finally(() => y.dispose());
    waiting = waiting.filter((j, w) => {
      const rows = Array.from({ length: CANDIDATES }, (_, c) => w * CANDIDATES + c);
      const hit = rows.find((row) => targetClass(probs, row, classes) === wanted[j]);
      const row = hit ?? (round === ROUNDS ? rows.at(-1)! : undefined);
      if (row === undefined) return true;
      out.set(candidates.subarray(row * k, (row + 1) * k), j * k);
      return false;
    });
  }
  return out;
}

/**
 * The feature model of the method's layer, or null for the `noise` method.
 *
 * @throws {CheckpointError} when a weight matrix of the teacher is all zero (its output is then
 *   the same for every input), or the layer's weights give no feature-space model.
 * @throws {RangeError} when the layer is not fully connected.
 */
export async function teacherFeatureModel(
  teacher: Sequential,
  cfg: Pick<SynthesisSettings, "method" | "layer" | "sigma">,
): Promise<FeatureModel | null> {
  const tensors: Record<string, HostTensor> = {};
  for (const p of teacher.parameters()) {
    tensors[p.name] = { shape: [...p.value.shape], data: await p.value.read() };
  }
  checkNonZeroWeights({ tensors, metadata: {} }, "teacher");
  if (cfg.method === "noise") return null;
  const layer = cfg.method === "softmax-space" ? teacher.layers.at(-1)!.name : cfg.layer;
  const l = teacher.layers[teacher.indexOf(layer)].layer;
  if (l.kind !== "linear") {
    throw new SettingError(
      "synthesis.layer",
      `synthesis.layer ${layer} is a ${l.kind} layer; choose a fully connected layer`,
    );
  }
  const w = l.params().weight;
  const [k, inFeatures] = w.shape;
  const weights = await w.read();
  try {
    return buildFeatureModel(layer, weights, k, inFeatures, cfg.sigma);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new CheckpointError(
      `teacher layer ${layer}: cannot build the feature-space model (${e.message}); the ` +
        `teacher's weights are degenerate: choose another synthesis.layer or synthesis.method, or ` +
        `retrain it`,
    );
  }
}
