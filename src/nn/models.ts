/**
 * The LeNet-5 family on 1×32×32 inputs (28×28 MNIST-family images zero-padded by 2).
 *
 * LeNet-5 (LeCun et al. 1998, as used by ZSKD and Wang, AAAI 2021): conv 6@5×5, max-pool 2,
 * conv 16@5×5, max-pool 2, FC 120, FC 84, FC 10, ReLU activations; 61,706 parameters.
 * LeNet-5-half halves the conv channels (3, 8) and keeps FC 120/84/10: 35,820 parameters, the
 * count ZSKD publishes.
 *
 * @module
 */

import { Rng } from "../random.ts";
import { Conv2d, Flatten, type Init, Linear, MaxPool2d, ReLU, Sequential } from "./layers.ts";

/** Names of the architectures this package can build. */
export type Architecture = "lenet5" | "lenet5-half";

/** Every architecture name, for flag validation. */
export const ARCHITECTURES: readonly Architecture[] = ["lenet5", "lenet5-half"];

/**
 * Builds a LeNet-5 (or LeNet-5-half) initialised from `seed` by `init` (default He-normal).
 *
 * Layer names: conv1, relu1, pool1, conv2, relu2, pool2, flatten, fc1, relu3, fc2, relu4, fc3.
 * "fc2" is the 84-unit layer the paper models by default; "fc3" outputs the logits.
 *
 * @throws {RangeError} for an unknown architecture name.
 */
export function buildModel(
  arch: Architecture,
  seed = 0,
  numClasses = 10,
  init: Init = "he-normal",
): Sequential {
  if (!ARCHITECTURES.includes(arch)) {
    throw new RangeError(`unknown architecture "${arch}"; use one of ${ARCHITECTURES.join(", ")}`);
  }
  const rng = new Rng(seed);
  const [c1, c2] = arch === "lenet5" ? [6, 16] : [3, 8];
  return new Sequential(arch, [1, 32, 32], [
    { name: "conv1", layer: new Conv2d(1, c1, 5, rng, 1, 0, init) },
    { name: "relu1", layer: new ReLU() },
    { name: "pool1", layer: new MaxPool2d(2) },
    { name: "conv2", layer: new Conv2d(c1, c2, 5, rng, 1, 0, init) },
    { name: "relu2", layer: new ReLU() },
    { name: "pool2", layer: new MaxPool2d(2) },
    { name: "flatten", layer: new Flatten() },
    { name: "fc1", layer: new Linear(c2 * 5 * 5, 120, rng, init) },
    { name: "relu3", layer: new ReLU() },
    { name: "fc2", layer: new Linear(120, 84, rng, init) },
    { name: "relu4", layer: new ReLU() },
    { name: "fc3", layer: new Linear(84, numClasses, rng, init) },
  ]);
}
