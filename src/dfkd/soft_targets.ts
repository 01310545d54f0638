/**
 * Soft targets (Wang, AAAI 2021, §3, step 2): `y_soft = softmax(T(s^l) / τ)`, where `T` is the rest
 * of the teacher after layer `l` (the layer's activation and every later layer). For the logit
 * layer `T` is the identity and `y_soft = softmax(s / τ)` ("softmax space").
 *
 * @module
 */

import { noGrad } from "../autograd/tape.ts";
import type { Sequential } from "../nn/layers.ts";
import { softmax } from "../ops/softmax.ts";
import { Tensor, tidy } from "../tensor.ts";

/**
 * Soft targets for sampled pre-activations of `layer`.
 *
 * @param samples `[n, k]` row-major pre-activations of `layer`.
 * @returns `[n, classes]` probabilities (rows sum to 1), on the GPU.
 * @throws {RangeError} when `layer` is not a layer of `teacher`.
 */
export function softTargets(
  teacher: Sequential,
  layer: string,
  samples: Float32Array,
  n: number,
  tau: number,
): Tensor {
  const from = teacher.indexOf(layer) + 1;
  return tidy(() =>
    noGrad(() => {
      const s = Tensor.from(samples, [n, samples.length / n]);
      const logits = from < teacher.layers.length ? teacher.run(s, { from }).y : s;
      return softmax(logits, tau);
    })
  );
}
