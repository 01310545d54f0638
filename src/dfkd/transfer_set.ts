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
import type { Rng } from "../random.ts";
import { Tensor, tidy } from "../tensor.ts";
import type { SynthesisSettings } from "./settings.ts";
import { buildFeatureModel, type FeatureModel, sampleFeatures } from "./feature_model.ts";
import { softTargets } from "./soft_targets.ts";
import { synthesizeBatch } from "./synthesis.ts";

/**
 * One batch of the transfer set: sample `n` pre-activations of the feature model's layer, turn
 * them into soft targets at τ, and optimise noise images toward them (Wang, AAAI 2021, §3,
 * steps 1–3). With no feature model (the `noise` baseline) the images are unoptimised uniform
 * noise labelled by the teacher at τ.
 *
 * Random draws come from `rng.fork("features")` and `rng.fork("pixels")`, so a batch is
 * reproducible from its own generator (the run forks one per batch from the seed).
 *
 * @returns images `[n, ...inputShape]` in [0, 1], soft targets `[n, classes]` and the final
 *   loss; `null` when `shouldStop` turned true.
 * @throws {NumericalError} when the synthesis loss becomes NaN or infinite.
 */
export async function synthesizeTransferBatch(
  teacher: Sequential,
  fm: FeatureModel | null,
  cfg: SynthesisSettings,
  logEvery: number,
  n: number,
  rng: Rng,
  onLog: (iteration: number, loss: number) => void,
  shouldStop?: () => boolean,
): Promise<{ images: Float32Array; targets: Float32Array; loss: number } | null> {
  if (!fm) {
    // The `noise` baseline: unoptimised uniform noise, labelled by the teacher at τ.
    const images = new Float32Array(n * teacher.inputShape.reduce((a, b) => a * b, 1));
    rng.fillUniform(images, 0, 1);
    const probs = tidy(() =>
      noGrad(() =>
        softmax(teacher.forward(Tensor.from(images, [n, ...teacher.inputShape])), cfg.tau)
      )
    );
    const targets = await probs.read();
    probs.dispose();
    return { images, targets, loss: 0 };
  }
  const samples = sampleFeatures(fm, n, rng.fork("features"));
  const y = softTargets(teacher, fm.layer, samples, n, cfg.tau);
  try {
    const res = await synthesizeBatch(
      teacher,
      y,
      rng.fork("pixels"),
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
