/**
 * Runs a range of a sequential model's layers with runs of layers fused where the model allows:
 * conv2d → relu → maxpool2d, relu → maxpool2d and linear → relu each become one differentiable
 * function of `autograd/fused.ts`. A run is fused only when none of its layers but the last has
 * its output captured, so captured outputs are the same tensors as without fusion.
 *
 * @module
 */

import { conv2dReluMaxPool2d, linearRelu, reluMaxPool2d } from "../autograd/fused.ts";
import type { Tensor } from "../tensor.ts";
import { Conv2d, type Layer, Linear, MaxPool2d, ReLU } from "./layers.ts";

/** A fused run: how many layers it spans and its forward. */
interface Fused {
  span: number;
  forward: (x: Tensor) => Tensor;
}

/** The fused run starting at `layers[i]` (ending by `to`, inclusive), or null. */
function fusedAt(
  layers: readonly { name: string; layer: Layer }[],
  i: number,
  to: number,
  captured: (name: string) => boolean,
): Fused | null {
  const at = (j: number) => (j <= to ? layers[j].layer : null);
  const free = (j: number) => !captured(layers[j].name);
  const a = at(i);
  const b = at(i + 1);
  const c = at(i + 2);
  if (
    a instanceof Conv2d && b instanceof ReLU && c instanceof MaxPool2d && free(i) && free(i + 1)
  ) {
    const conv = { stride: a.stride, padding: a.padding };
    const pool = { kernelSize: c.kernelSize, stride: c.stride };
    return { span: 3, forward: (x) => conv2dReluMaxPool2d(x, a.weight, a.bias, conv, pool) };
  }
  if (a instanceof ReLU && b instanceof MaxPool2d && free(i)) {
    const pool = { kernelSize: b.kernelSize, stride: b.stride };
    return { span: 2, forward: (x) => reluMaxPool2d(x, pool) };
  }
  if (a instanceof Linear && b instanceof ReLU && free(i)) {
    return { span: 2, forward: (x) => linearRelu(x, a.weight, a.bias) };
  }
  return null;
}

/**
 * Runs `layers[from..to]` on x, fusing what {@link fusedAt} allows; returns the output and the
 * outputs of the layers named in `capture`.
 */
export function runFused(
  layers: readonly { name: string; layer: Layer }[],
  from: number,
  to: number,
  x: Tensor,
  capture: readonly string[] = [],
): { y: Tensor; captured: Map<string, Tensor> } {
  const captured = new Map<string, Tensor>();
  const isCaptured = (name: string) => capture.includes(name);
  let y = x;
  for (let i = from; i <= to;) {
    const fused = fusedAt(layers, i, to, isCaptured);
    const span = fused?.span ?? 1;
    y = fused ? fused.forward(y) : layers[i].layer.forward(y);
    const last = layers[i + span - 1].name;
    if (isCaptured(last)) captured.set(last, y);
    i += span;
  }
  return { y, captured };
}
