/**
 * Differentiable functions: each runs its forward op and, when a tape is recording and an input
 * needs a gradient, records its backward rule right beside it.
 *
 * @module
 */

import {
  conv2d as conv2dOp,
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  type Conv2dOptions,
} from "../ops/conv2d.ts";
import { add as addOp, affine, relu as reluOp, reluBackward } from "../ops/elementwise.ts";
import {
  activationLoss as activationLossOp,
  type ActivationNorm,
  crossEntropyLoss as crossEntropyOp,
  kdDivergence as kdDivergenceOp,
  kdLoss as kdLossOp,
  klDivLoss as klDivOp,
  type LossReduction,
  type LossResult,
  totalVariation as totalVariationOp,
} from "../ops/loss.ts";
import { scaleByScalar } from "../ops/optim.ts";
import { matmul } from "../ops/matmul.ts";
import {
  avgPool2d as avgPoolOp,
  avgPool2dBackward,
  maxPool2d as maxPoolOp,
  maxPool2dBackward,
  type Pool2dOptions,
} from "../ops/pool.ts";
import { sumCols } from "../ops/reduce.ts";
import {
  type ImageShift,
  shift2d as shiftOp,
  shift2dBackward,
  shift2dPerImage as shiftPerImageOp,
  shift2dPerImageBackward,
} from "../ops/shift.ts";
import { upsampleBilinear as upsampleOp, upsampleBilinearBackward } from "../ops/upsample.ts";
import type { Tensor } from "../tensor.ts";
import { activeTape, isSeed } from "./tape.ts";

/** Fully connected layer `y = x·Wᵀ + b`; x: [N, in], w: [out, in], b: [out] → [N, out]. */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  const y = matmul(x, w, { transB: true, bias: b });
  activeTape()?.record(y, b ? [x, w, b] : [x, w], (gy, needs) => [
    needs[0] ? matmul(gy, w) : null, // dx = gy·W
    needs[1] ? matmul(gy, x, { transA: true }) : null, // dW = gyᵀ·x
    b && needs[2] ? sumCols(gy) : null, // db = Σ_n gy
  ]);
  return y;
}

/** 2-D convolution, NCHW; x: [N, C, H, W], w: [O, C, kH, kW], b: [O] → [N, O, OH, OW]. */
export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const y = conv2dOp(x, w, b, opts);
  activeTape()?.record(y, b ? [x, w, b] : [x, w], (gy, needs) => [
    needs[0] ? conv2dBackwardInput(gy, w, x.shape, opts) : null,
    needs[1] ? conv2dBackwardWeight(x, gy, w.shape, opts) : null,
    b && needs[2] ? conv2dBackwardBias(gy) : null,
  ]);
  return y;
}

/** `max(x, 0)` element-wise. */
export function relu(x: Tensor): Tensor {
  const y = reluOp(x);
  activeTape()?.record(y, [x], (gy) => [reluBackward(x, gy)]);
  return y;
}

/** Max pooling, NCHW, no padding; x: [N, C, H, W] → [N, C, OH, OW]. */
export function maxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const { y, argmax } = maxPoolOp(x, opts);
  const tape = activeTape();
  if (tape?.needsGrad(x)) {
    tape.record(y, [x], (gy) => [maxPool2dBackward(gy, argmax, x.shape, opts)]);
  } else {
    argmax.dispose();
  }
  return y;
}

/** Average pooling, NCHW, no padding; x: [N, C, H, W] → [N, C, OH, OW]. */
export function avgPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const y = avgPoolOp(x, opts);
  activeTape()?.record(y, [x], (gy) => [avgPool2dBackward(gy, x.shape, opts)]);
  return y;
}

/** A view of `x` with another shape (no copy); e.g. flatten [N, C, H, W] → [N, C·H·W]. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const y = x.reshape(shape);
  activeTape()?.record(y, [x], (gy) => [gy.reshape(x.shape)]);
  return y;
}

/**
 * Circular shift by (dy, dx) pixels after an optional horizontal flip; x: [N, C, H, W] → same.
 * Synthesis jitter (random translations between iterations, as in DeepInversion).
 */
export function shift2d(x: Tensor, dy: number, dx: number, flip = false): Tensor {
  const y = shiftOp(x, dy, dx, flip);
  activeTape()?.record(y, [x], (gy) => [shift2dBackward(gy, dy, dx, flip)]);
  return y;
}

/**
 * {@link shift2d} with one shift per image: image `n` of x ([N, C, H, W]) moved by `shifts[n]`
 * (wrapping), after a mirror when its `flip` is set.
 */
export function shift2dPerImage(x: Tensor, shifts: readonly ImageShift[]): Tensor {
  const y = shiftPerImageOp(x, shifts);
  activeTape()?.record(y, [x], (gy) => [shift2dPerImageBackward(gy, shifts)]);
  return y;
}

/**
 * Bilinear upsampling by an integer factor F (half-pixel centres, edges clamped: PyTorch's
 * `interpolate(mode="bilinear", align_corners=False)`); x: [N, C, h, w] → [N, C, h·F, w·F].
 *
 * @throws {RangeError} when `x` is not 4-D or `factor` is not an integer in [1, 16].
 */
export function upsampleBilinear(x: Tensor, factor: number): Tensor {
  const y = upsampleOp(x, factor);
  activeTape()?.record(y, [x], (gy) => [upsampleBilinearBackward(gy, factor)]);
  return y;
}

/** `alpha·a + beta·b` for tensors of equal size (e.g. combining scalar losses). */
export function add(a: Tensor, b: Tensor, alpha = 1, beta = 1): Tensor {
  const y = addOp(a, b, alpha, beta);
  activeTape()?.record(y, [a, b], (gy, needs) => [
    needs[0] ? affine(gy, alpha) : null,
    needs[1] ? affine(gy, beta) : null,
  ]);
  return y;
}

/**
 * Records a loss whose gradient w.r.t. `input` was computed with it (`r.grad`); the backward rule
 * scales it by the upstream gradient, or, when that is the backward pass's seed of 1, hands out a
 * view of it (no pass).
 */
export function lossNode(r: LossResult, input: Tensor): Tensor {
  const tape = activeTape();
  if (tape?.needsGrad(input)) {
    tape.record(r.loss, [input], (gy) => [
      isSeed(gy) ? r.grad.reshape(r.grad.shape) : scaleByScalar(r.grad, gy),
    ]);
  } else {
    r.grad.dispose();
  }
  return r.loss;
}

/**
 * Synthesis loss: `mean_n KL(p_n ‖ softmax(z_n / tau))` (Wang, AAAI 2021, eq. for input
 * synthesis), or `Σ_n KL(…)` with `reduction` `"sum"`. p: [N, K] soft targets, z: [N, K] teacher
 * logits → [1]. Differentiable in z.
 */
export function klDivLoss(
  p: Tensor,
  z: Tensor,
  tau: number,
  reduction: LossReduction = "mean",
): Tensor {
  return lossNode(klDivOp(p, z, tau, reduction), z);
}

/**
 * Knowledge-distillation loss (Hinton et al. 2015): `tau² · mean_n CE(softmax(t/τ), softmax(s/τ))`.
 * Differentiable in the student logits s: [N, K]; teacher logits t: [N, K] are constants.
 */
export function kdLoss(teacherLogits: Tensor, studentLogits: Tensor, tau: number): Tensor {
  return lossNode(kdLossOp(teacherLogits, studentLogits, tau), studentLogits);
}

/**
 * KL form of the KD loss, `tau² · mean_n KL(softmax(t/τ) ‖ softmax(s/τ))`, differentiable in both
 * the teacher logits t: [N, K] and the student logits s: [N, K] → [1] (gradients w.r.t. an input
 * image then flow through both networks).
 */
export function kdDivergence(teacherLogits: Tensor, studentLogits: Tensor, tau: number): Tensor {
  const r = kdDivergenceOp(teacherLogits, studentLogits, tau);
  const tape = activeTape();
  if (tape && (tape.needsGrad(teacherLogits) || tape.needsGrad(studentLogits))) {
    tape.record(r.loss, [teacherLogits, studentLogits], (gy, needs) => [
      needs[0] ? scaleByScalar(r.gradTeacher, gy) : null,
      needs[1] ? scaleByScalar(r.grad, gy) : null,
    ]);
  } else {
    r.grad.dispose();
    r.gradTeacher.dispose();
  }
  return r.loss;
}

/** Cross-entropy with integer labels: z: [N, K], labels: u32 [N] → [1] batch mean. */
export function crossEntropyLoss(z: Tensor, labels: Tensor): Tensor {
  return lossNode(crossEntropyOp(z, labels), z);
}

/**
 * Activation loss `L_a` (Wang, AAAI 2021; after DAFL): `-(1/N) Σ_n ‖a_n‖₁` ("sample-l1") or the
 * mean over elements ("element-mean"); with `reduction` `"sum"`, the per-sample terms summed
 * over the N samples. a: [N, ...] → [1].
 */
export function activationLoss(
  a: Tensor,
  norm: ActivationNorm,
  reduction: LossReduction = "mean",
): Tensor {
  return lossNode(activationLossOp(a, norm, reduction), a);
}

/**
 * Total-variation image prior (Mahendran & Vedaldi, 2015): each image's mean absolute difference
 * between vertical and horizontal neighbours, averaged (or summed) over the batch.
 * x: [N, C, H, W] → [1].
 */
export function totalVariation(x: Tensor, reduction: LossReduction = "mean"): Tensor {
  return lossNode(totalVariationOp(x, reduction), x);
}
