/**
 * Layers and a sequential container that can run from any layer onward.
 *
 * All layers are NCHW f32. Parameters are named as PyTorch names them inside a module
 * (`weight`, `bias`), so a checkpoint key is `<layer name>.<param>`, e.g. `conv1.weight`.
 *
 * @module
 */

import * as F from "../autograd/functions.ts";
import { linearKdLoss, linearKlDivLoss } from "../autograd/fused.ts";
import { runFused } from "./_fusion.ts";
import type { LossReduction } from "../ops/loss.ts";
import { Tensor } from "../tensor.ts";
import type { Rng } from "../random.ts";

/** A named trainable tensor. */
export interface Parameter {
  /** Checkpoint key, e.g. `"fc2.weight"`. */
  name: string;
  /** The value; `requiresGrad` is set while training. */
  value: Tensor;
}

/** One layer of a {@link Sequential} model. */
export interface Layer {
  /** Layer kind, e.g. `"conv2d"`, `"linear"`, `"relu"`. */
  readonly kind: string;
  /** Runs the layer (recording on the active tape, if any). */
  forward(x: Tensor): Tensor;
  /** Trainable tensors, keyed by parameter name (`weight`, `bias`). */
  params(): Record<string, Tensor>;
  /** Output shape for an input shape (batch dimension included). */
  outputShape(inShape: readonly number[]): number[];
}

/**
 * Weight initialisation schemes:
 * - `"he-normal"`: weights ~ N(0, 2 / fanIn), biases zero (He et al., "Delving Deep into
 *   Rectifiers", 2015);
 * - `"uniform"`: weights and biases ~ U(−1/√fanIn, 1/√fanIn), PyTorch's default for `Conv2d` and
 *   `Linear` (Kaiming-uniform with a = √5). Teachers trained from it invert into transfer sets
 *   that distil far better (measured: see the README).
 */
export type Init = "he-normal" | "uniform";

/** Every initialisation scheme, for flag validation. */
export const INITS: readonly Init[] = ["he-normal", "uniform"];

function initWeights(shape: number[], fanIn: number, rng: Rng, init: Init): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  if (init === "uniform") rng.fillUniform(data, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn));
  else rng.fillNormal(data, 0, Math.sqrt(2 / fanIn));
  return Tensor.from(data, shape);
}

function initBias(n: number, fanIn: number, rng: Rng, init: Init): Tensor {
  if (init === "he-normal") return Tensor.zeros([n]);
  const data = new Float32Array(n);
  rng.fillUniform(data, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn));
  return Tensor.from(data, [n]);
}

/** 2-D convolution layer: weight [outChannels, inChannels, kernelSize, kernelSize], bias [outChannels]. */
export class Conv2d implements Layer {
  /** Always `"conv2d"`. */
  readonly kind = "conv2d";
  /** Weight `[outChannels, inChannels, kernelSize, kernelSize]`, He-normal initialised. */
  weight: Tensor;
  /** Bias `[outChannels]`, zero initialised. */
  bias: Tensor;
  /**
   * A square convolution with He-normal weights drawn from `rng` and zero biases.
   *
   * @param stride step between output positions (default 1).
   * @param padding zeros added on every side of the input (default 0).
   */
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    rng: Rng,
    readonly stride: number = 1,
    readonly padding: number = 0,
    init: Init = "he-normal",
  ) {
    const fanIn = inChannels * kernelSize * kernelSize;
    this.weight = initWeights([outChannels, inChannels, kernelSize, kernelSize], fanIn, rng, init);
    this.bias = initBias(outChannels, fanIn, rng, init);
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
  params(): Record<string, Tensor> {
    return { weight: this.weight, bias: this.bias };
  }
  outputShape([n, _c, h, w]: readonly number[]): number[] {
    const o = (s: number) => Math.floor((s + 2 * this.padding - this.kernelSize) / this.stride) + 1;
    return [n, this.outChannels, o(h), o(w)];
  }
}

/** Fully connected layer `y = x·Wᵀ + b`: weight [outFeatures, inFeatures], bias [outFeatures]. */
export class Linear implements Layer {
  /** Always `"linear"`. */
  readonly kind = "linear";
  /** Weight `[outFeatures, inFeatures]`. */
  weight: Tensor;
  /** Bias `[outFeatures]`. */
  bias: Tensor;
  /** A fully connected layer initialised from `rng` by `init` (default He-normal, zero biases). */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Rng,
    init: Init = "he-normal",
  ) {
    this.weight = initWeights([outFeatures, inFeatures], inFeatures, rng, init);
    this.bias = initBias(outFeatures, inFeatures, rng, init);
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
  params(): Record<string, Tensor> {
    return { weight: this.weight, bias: this.bias };
  }
  outputShape([n]: readonly number[]): number[] {
    return [n, this.outFeatures];
  }
}

/** `max(x, 0)`. */
export class ReLU implements Layer {
  readonly kind = "relu";
  forward(x: Tensor): Tensor {
    return F.relu(x);
  }
  params(): Record<string, Tensor> {
    return {};
  }
  outputShape(s: readonly number[]): number[] {
    return [...s];
  }
}

/** Base of the pooling layers: `kernelSize × kernelSize` windows, no padding, no parameters. */
export abstract class Pool2d implements Layer {
  /** Layer kind, `"maxpool2d"` or `"avgpool2d"`. */
  abstract readonly kind: string;
  /**
   * A pooling layer over `kernelSize × kernelSize` windows.
   * @param stride step between windows (default `kernelSize`).
   */
  constructor(readonly kernelSize: number, readonly stride: number = kernelSize) {}
  /** Pools x: `[N, C, H, W]` → `[N, C, ⌊(H−k)/s⌋+1, ⌊(W−k)/s⌋+1]`. */
  abstract forward(x: Tensor): Tensor;
  /** No parameters: `{}`. */
  params(): Record<string, Tensor> {
    return {};
  }
  /** `[N, C, H, W]` → `[N, C, ⌊(H−k)/s⌋+1, ⌊(W−k)/s⌋+1]`. */
  outputShape([n, c, h, w]: readonly number[]): number[] {
    const o = (s: number) => Math.floor((s - this.kernelSize) / this.stride) + 1;
    return [n, c, o(h), o(w)];
  }
}

/** Max pooling, no padding. */
export class MaxPool2d extends Pool2d {
  /** Always `"maxpool2d"`. */
  readonly kind = "maxpool2d";
  /** The maximum of each window; x: `[N, C, H, W]`. */
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, { kernelSize: this.kernelSize, stride: this.stride });
  }
}

/** Average pooling, no padding. */
export class AvgPool2d extends Pool2d {
  /** Always `"avgpool2d"`. */
  readonly kind = "avgpool2d";
  /** The mean of each window; x: `[N, C, H, W]`. */
  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, { kernelSize: this.kernelSize, stride: this.stride });
  }
}

/** [N, C, H, W] → [N, C·H·W] as a view (no copy). */
export class Flatten implements Layer {
  readonly kind = "flatten";
  forward(x: Tensor): Tensor {
    return F.reshape(x, [x.shape[0], x.size / x.shape[0]]);
  }
  params(): Record<string, Tensor> {
    return {};
  }
  outputShape(s: readonly number[]): number[] {
    return [s[0], s.slice(1).reduce((a, b) => a * b, 1)];
  }
}

/** Options of {@link Sequential.run}. */
export interface RunOptions {
  /** Index or name of the first layer to run (default 0). */
  from?: number | string;
  /** Index or name of the last layer to run, inclusive (default the last layer). */
  to?: number | string;
  /** Names of layers whose outputs to return in `captured`. */
  capture?: readonly string[];
}

/** An ordered list of named layers. */
export class Sequential {
  /** A model running `layers` in order on inputs `[N, ...inputShape]`. */
  constructor(
    /** Architecture name, e.g. `"lenet5"`; stored in checkpoints. */
    readonly arch: string,
    /** Input shape without the batch dimension, e.g. `[1, 32, 32]`. */
    readonly inputShape: readonly number[],
    readonly layers: readonly { name: string; layer: Layer }[],
  ) {}

  /** The index of a layer given by index or name. @throws {RangeError} if unknown. */
  indexOf(layer: number | string): number {
    const i = typeof layer === "number" ? layer : this.layers.findIndex((l) => l.name === layer);
    if (i < 0 || i >= this.layers.length) {
      throw new RangeError(
        `no layer ${JSON.stringify(layer)} in ${this.arch}; layers: ${
          this.layers.map((l) => l.name).join(", ")
        }`,
      );
    }
    return i;
  }

  /** Logits for x: [N, ...inputShape] → [N, classes]. */
  forward(x: Tensor): Tensor {
    return this.run(x).y;
  }

  /**
   * Runs layers `from`..`to` (inclusive) on x, which must be the input of layer `from`
   * (e.g. a sampled pre-activation of fc2 for "the rest of the teacher after fc2").
   * Runs of conv2d → relu → maxpool2d, relu → maxpool2d and linear → relu run fused (fewer GPU
   * passes, the same values up to f32 rounding), except where an inner output is captured.
   */
  run(x: Tensor, opts: RunOptions = {}): { y: Tensor; captured: Map<string, Tensor> } {
    const from = this.indexOf(opts.from ?? 0);
    const to = this.indexOf(opts.to ?? this.layers.length - 1);
    return runFused(this.layers, from, to, x, opts.capture);
  }

  /**
   * The synthesis loss of x against soft targets (Wang, AAAI 2021):
   * `mean_n KL(targets_n ‖ softmax(model(x)_n / tau))` (`Σ_n` with `reduction` `"sum"`) as a
   * `[1]` tensor, differentiable in x,
   * and the outputs of the layers named in `capture`. When the last layer is linear, it and the
   * loss run as one pass (the logits are not stored).
   *
   * @param x input `[N, ...inputShape]`; `targets` `[N, classes]` with rows summing to 1.
   */
  klDivLoss(
    x: Tensor,
    targets: Tensor,
    tau: number,
    capture: readonly string[] = [],
    reduction: LossReduction = "mean",
  ): { loss: Tensor; captured: Map<string, Tensor> } {
    const last = this.layers.length - 1;
    const head = this.layers[last];
    if (!(head.layer instanceof Linear) || capture.includes(head.name)) {
      const { y, captured } = this.run(x, { capture });
      return { loss: F.klDivLoss(targets, y, tau, reduction), captured };
    }
    const { y, captured } = runFused(this.layers, 0, last - 1, x, capture);
    const { weight, bias } = head.layer;
    return { loss: linearKlDivLoss(targets, y, weight, bias, tau, reduction), captured };
  }

  /**
   * The distillation loss of this model as the student (Hinton et al. 2015):
   * `tau² · mean_n CE(softmax(teacherLogits_n / tau), softmax(model(x)_n / tau))` as a `[1]`
   * tensor, differentiable in x and the parameters. When the last layer is linear, it and the
   * loss run fused (the logits are not stored).
   *
   * @param x input `[N, ...inputShape]`; `teacherLogits` `[N, classes]`.
   */
  kdLoss(x: Tensor, teacherLogits: Tensor, tau: number): Tensor {
    const last = this.layers.length - 1;
    const head = this.layers[last].layer;
    if (!(head instanceof Linear)) return F.kdLoss(teacherLogits, this.forward(x), tau);
    const { y } = runFused(this.layers, 0, last - 1, x);
    return linearKdLoss(teacherLogits, y, head.weight, head.bias, tau);
  }

  /** Every parameter with its checkpoint key, in layer order. */
  parameters(): Parameter[] {
    const out: Parameter[] = [];
    for (const { name, layer } of this.layers) {
      for (const [p, value] of Object.entries(layer.params())) {
        out.push({ name: `${name}.${p}`, value });
      }
    }
    return out;
  }

  /** Total number of scalar parameters. */
  parameterCount(): number {
    return this.parameters().reduce((a, p) => a + p.value.size, 0);
  }

  /** Sets `requiresGrad` on every parameter (true to train, false to freeze). */
  setTrainable(trainable: boolean): void {
    for (const p of this.parameters()) p.value.requiresGrad = trainable;
  }

  /** Output shape of each layer for a batch of n. */
  shapes(n = 1): { name: string; shape: number[] }[] {
    let s = [n, ...this.inputShape];
    return this.layers.map(({ name, layer }) => ({ name, shape: s = layer.outputShape(s) }));
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const p of this.parameters()) p.value.dispose();
  }
}
