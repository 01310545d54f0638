/**
 * Differentiable functions that fuse a layer with the element-wise work around it, each with its
 * backward rule beside it: fewer passes per step, the same values as the separate functions (up
 * to f32 rounding order).
 *
 * - `linearRelu`: `relu(x·Wᵀ + b)` in one matmul pass; backward to x with the ReLU's mask read in
 *   the matmul's load.
 * - `reluMaxPool2d`: `maxPool(relu(x))` in one pass; backward with the mask in the same pass.
 * - `conv2dReluMaxPool2d`: a convolution, its ReLU and a max-pool; when only the input needs a
 *   gradient (a frozen teacher), the pool's backward writes straight into the layout the
 *   backward convolution reads.
 * - `linearKlDivLoss`: the synthesis loss through the last linear layer in one pass.
 * - `linearKdLoss`: the distillation loss through the student's last linear layer, its gradient
 *   to the layer's input in the same pass and to its weight and bias in one more.
 *
 * Where weights need gradients (training), the backward rules take the unfused path for them.
 *
 * @module
 */

import {
  conv2d as conv2dOp,
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardInputPrepared,
  conv2dBackwardWeight,
  type Conv2dOptions,
} from "../ops/conv2d.ts";
import { reluBackward } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import {
  LINEAR_KL_MAX_CLASSES,
  linearKdLoss as linearKdOp,
  linearKdParamGrads,
  linearKlDivLoss as linearKlDivOp,
} from "../ops/loss_head.ts";
import {
  maxPool2d as maxPoolOp,
  maxPool2dBackward,
  maxPool2dBackwardPrepared,
  type Pool2dOptions,
  poolWritesPrepared,
} from "../ops/pool.ts";
import type { LossReduction } from "../ops/loss.ts";
import { sumCols } from "../ops/reduce.ts";
import type { Tensor } from "../tensor.ts";
import { scaleByScalar } from "../ops/optim.ts";
import { kdLoss, klDivLoss, linear, lossNode } from "./functions.ts";
import { activeTape, isSeed } from "./tape.ts";

/** `relu(x·Wᵀ + b)`; x: [N, in], w: [out, in], b: [out] → [N, out]. */
export function linearRelu(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  const y = matmul(x, w, { transB: true, bias: b, relu: true });
  activeTape()?.record(y, b ? [x, w, b] : [x, w], (gy, needs) => {
    if (!needs[1] && !(b && needs[2])) {
      return [needs[0] ? matmul(gy, w, { reluMaskA: y }) : null, null, null];
    }
    const gz = reluBackward(y, gy); // dL/d(x·Wᵀ + b) = gy where y > 0
    const out = [
      needs[0] ? matmul(gz, w) : null,
      matmul(gz, x, { transA: true }),
      b && needs[2] ? sumCols(gz) : null,
    ];
    gz.dispose();
    return out;
  });
  return y;
}

/** `maxPool2d(relu(x))`, NCHW, no padding; x: [N, C, H, W] → [N, C, OH, OW]. */
export function reluMaxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const { y, argmax } = maxPoolOp(x, opts, true);
  const tape = activeTape();
  if (tape?.needsGrad(x)) {
    tape.record(y, [x], (gy) => [maxPool2dBackward(gy, argmax, x.shape, opts, y)]);
  } else {
    argmax.dispose();
  }
  return y;
}

/**
 * `maxPool2d(relu(conv2d(x, w, b)))`; x: [N, C, H, W], w: [O, C, kH, kW], b: [O] →
 * [N, O, PH, PW]. The convolution's output is freed at once (the backward pass needs only the
 * pooled output and its argmax).
 */
export function conv2dReluMaxPool2d(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  convOpts: Conv2dOptions,
  poolOpts: Pool2dOptions,
): Tensor {
  const z = conv2dOp(x, w, b, convOpts);
  const { y, argmax } = maxPoolOp(z, poolOpts, true);
  const zShape = z.shape;
  z.dispose();
  const tape = activeTape();
  const inputs = b ? [x, w, b] : [x, w];
  if (!tape || !inputs.some((t) => tape.needsGrad(t))) {
    argmax.dispose();
    return y;
  }
  tape.record(y, inputs, (gy, needs) => {
    if (!needs[1] && !(b && needs[2]) && poolWritesPrepared(poolOpts)) {
      const gx = conv2dBackwardInputPrepared(
        w,
        x.shape,
        convOpts,
        (layout) => maxPool2dBackwardPrepared(gy, argmax, y, zShape, poolOpts, layout),
      );
      return [gx, null, null];
    }
    const gz = maxPool2dBackward(gy, argmax, zShape, poolOpts, y);
    const out = [
      needs[0] ? conv2dBackwardInput(gz, w, x.shape, convOpts) : null,
      needs[1] ? conv2dBackwardWeight(x, gz, w.shape, convOpts) : null,
      b && needs[2] ? conv2dBackwardBias(gz) : null,
    ];
    gz.dispose();
    return out;
  });
  return y;
}

/**
 * Synthesis loss through a last linear layer: `mean_n KL(p_n ‖ softmax((x_n·Wᵀ + b) / tau))`,
 * p: [N, K], x: [N, M], w: [K, M], b: [K] → [1]; differentiable in x. One pass when the layer is
 * frozen and K ≤ 32, else `klDivLoss(p, linear(x, w, b), tau)`.
 */
export function linearKlDivLoss(
  p: Tensor,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  tau: number,
  reduction: LossReduction = "mean",
): Tensor {
  if (w.requiresGrad || b?.requiresGrad || w.shape[0] > LINEAR_KL_MAX_CLASSES) {
    return klDivLoss(p, linear(x, w, b), tau, reduction);
  }
  const { loss, gradX } = linearKlDivOp(p, x, w, b, tau, reduction);
  return lossNode({ loss, grad: gradX }, x);
}

/**
 * Distillation loss through the student's last linear layer:
 * `tau² · mean_n CE(softmax(t_n / tau), softmax((h_n·Wᵀ + b) / tau))`; t: [N, K] teacher logits
 * (constants), h: [N, M], w: [K, M], b: [K] → [1]; differentiable in h, w and b. Two passes (and
 * the loss's sum) when K ≤ 32, else `kdLoss(t, linear(h, w, b), tau)`.
 */
export function linearKdLoss(
  t: Tensor,
  h: Tensor,
  w: Tensor,
  b: Tensor | null,
  tau: number,
): Tensor {
  if (w.shape[0] > LINEAR_KL_MAX_CLASSES) return kdLoss(t, linear(h, w, b), tau);
  const { loss, gradZ, gradH } = linearKdOp(t, h, w, b, tau);
  const tape = activeTape();
  const inputs = b ? [h, w, b] : [h, w];
  if (!tape || !inputs.some((x) => tape.needsGrad(x))) {
    gradZ.dispose();
    gradH.dispose();
    return loss;
  }
  tape.record(loss, inputs, (gy, needs) => {
    const params = needs[1] || (b && needs[2])
      ? linearKdParamGrads(gradZ, h, b !== null && needs[2])
      : { gradW: null, gradB: null };
    if (!needs[1]) params.gradW?.dispose();
    gradZ.dispose();
    const grads = [needs[0] ? gradH : null, needs[1] ? params.gradW : null, params.gradB];
    if (!needs[0]) gradH.dispose();
    if (isSeed(gy)) return grads;
    return grads.map((g) => {
      if (!g) return null;
      const scaled = scaleByScalar(g, gy);
      g.dispose();
      return scaled;
    });
  });
  return loss;
}
