/**
 * 2-D convolution (cross-correlation, as in PyTorch's `conv2d`) on NCHW `f32` tensors: forward,
 * gradients of the input, the weights and the bias.
 *
 * Square stride and padding, any kernel size `kH × kW`. Output size
 * `OH = floor((H + 2p − kH) / s) + 1` (likewise `OW`).
 *
 * How it runs (see the headers of `kernels/conv2d.wgsl` and `kernels/conv2d_backward_weight.wgsl`):
 * the input is first copied into a padded, row-aligned layout (column phases split by the stride),
 * the weights are relaid out and copied into a 64 KiB uniform buffer owned by this module (one
 * dispatch per chunk when they do not fit), and a register-blocked direct kernel computes the
 * output. The gradient of the input is the same kernel applied to the gradient of the output,
 * dilated by the stride and padded by `k − 1 − p`, with flipped, transposed weights (the kernel
 * skips the all-zero rows; for stride `s > 1` it still spends `s` times the necessary
 * multiply-adds on the inserted zero columns). The gradient of the weights is a split reduction
 * over groups of images followed by a sum over the groups.
 *
 * Every op only queues GPU work (no readback) and frees its temporaries.
 *
 * @module
 */

import { dispatch, groups } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkDtype, checkRank4, checkShape } from "./_checks.ts";
import { conv2dGeometry, type Conv2dOptions, outputShape } from "./_conv2d_geometry.ts";
import {
  BIAS_GRAD,
  convolve,
  convolvePrepared,
  prepareInput,
  REDUCE,
  weightGradKernel,
} from "./_conv2d_kernels.ts";
import {
  backwardInputPass,
  forwardPass,
  forwardPlan,
  type PreparedLayout,
  weightGradPlan,
} from "./_conv2d_plan.ts";

export type { Conv2dOptions } from "./_conv2d_geometry.ts";

/**
 * 2-D convolution (cross-correlation) with optional bias.
 *
 * @param x input [N, C, H, W] (f32)
 * @param w weights [O, C, kH, kW] (f32)
 * @param bias [O] (f32) or null
 * @param opts stride (default 1) and zero padding (default 0)
 * @returns y [N, O, OH, OW], OH = floor((H + 2p − kH) / s) + 1, OW likewise
 * @throws {RangeError} when a tensor is not 4-D f32, the channel counts of `x` and `w` differ,
 *   `bias` is not [O], the kernel exceeds the padded input or 2048 taps, or stride/padding are
 *   not integers (stride >= 1, padding >= 0).
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2d";
  checkDtype(op, "input", x);
  checkDtype(op, "weight", w);
  const g = conv2dGeometry(op, x.shape, w.shape, opts);
  if (bias) {
    checkDtype(op, "bias", bias);
    checkShape(op, "bias", bias.shape, [g.outChannels]);
  }
  return convolve(x, w, bias, forwardPass(g));
}

/**
 * Gradient of {@link conv2d} with respect to its input.
 *
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @param w weights [O, C, kH, kW] (f32)
 * @param inputShape the forward input's shape [N, C, H, W]
 * @param opts the forward pass's stride and padding
 * @returns gx [N, C, H, W]
 * @throws {RangeError} when shapes are inconsistent: `gy` must be [N, O, OH, OW] for the
 *   convolution of `inputShape` by `w` with `opts`; also as {@link conv2d}.
 */
export function conv2dBackwardInput(
  gy: Tensor,
  w: Tensor,
  inputShape: readonly number[],
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2dBackwardInput";
  checkDtype(op, "gy", gy);
  checkDtype(op, "weight", w);
  const g = conv2dGeometry(op, inputShape, w.shape, opts);
  checkShape(op, "gy", gy.shape, outputShape(g));
  return convolve(gy, w, null, backwardInputPass(g));
}

/**
 * Gradient of {@link conv2d} with respect to its input, from a gradient of the output that a
 * fused producer writes straight into the kernel's prepared layout (padded by `k − 1 − p`,
 * dilated by the stride): `prepare(layout)` queues that pass and returns its tensor, which this
 * function frees. Saves the preparation pass of {@link conv2dBackwardInput}.
 *
 * @param w weights [O, C, kH, kW] (f32)
 * @param inputShape the forward input's shape [N, C, H, W]
 * @param opts the forward pass's stride and padding
 * @param prepare writes the output gradient [N, O, OH, OW] in `layout` (one column phase)
 * @returns gx [N, C, H, W]
 * @throws {RangeError} as {@link conv2d}.
 */
export function conv2dBackwardInputPrepared(
  w: Tensor,
  inputShape: readonly number[],
  opts: Conv2dOptions | undefined,
  prepare: (layout: PreparedLayout) => Tensor,
): Tensor {
  const op = "conv2dBackwardInputPrepared";
  checkDtype(op, "weight", w);
  const pass = backwardInputPass(conv2dGeometry(op, inputShape, w.shape, opts));
  const plan = forwardPlan(pass);
  const xq = prepare(plan.input);
  const gx = convolvePrepared(xq, plan.input.vec4s, w, null, pass, plan);
  xq.dispose();
  return gx;
}

/**
 * Gradient of {@link conv2d} with respect to its weights (summed over the batch).
 *
 * @param x the forward input [N, C, H, W] (f32)
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @param weightShape [O, C, kH, kW]
 * @param opts the forward pass's stride and padding
 * @returns gw [O, C, kH, kW]
 * @throws {RangeError} when `gy` is not [N, O, OH, OW] for the convolution of `x` by a
 *   `weightShape` kernel with `opts`; also as {@link conv2d}.
 */
export function conv2dBackwardWeight(
  x: Tensor,
  gy: Tensor,
  weightShape: readonly number[],
  opts?: Conv2dOptions,
): Tensor {
  const op = "conv2dBackwardWeight";
  checkDtype(op, "input", x);
  checkDtype(op, "gy", gy);
  const g = conv2dGeometry(op, x.shape, weightShape, opts);
  checkShape(op, "gy", gy.shape, outputShape(g));
  const plan = weightGradPlan(g);
  const xq = prepareInput(x, plan.input, true);
  const gq = prepareInput(gy, plan.grad, false);
  const wsize = g.outChannels * g.inChannels * g.kernelHeight * g.kernelWidth;
  const gw = Tensor.empty([...weightShape]);
  const part = plan.groups > 1 ? Tensor.empty([plan.groups * wsize]) : gw;
  dispatch(
    weightGradKernel(g, plan.TN),
    [xq.buffer, gq.buffer, part.buffer],
    {
      C: g.inChannels,
      O: g.outChannels,
      Hq: plan.input.rows,
      Wq4: plan.input.vec4s,
      OH: g.outHeight,
      OW4: plan.grad.vec4s,
      KH: g.kernelHeight,
      nMB: plan.nMB,
      nOB: plan.nOB,
      N: g.batch,
      perGroup: plan.perGroup,
      total: plan.total,
      wsize,
    },
    groups(plan.total, 64),
  );
  xq.dispose();
  gq.dispose();
  if (part !== gw) {
    dispatch(
      REDUCE,
      [part.buffer, gw.buffer],
      { size: wsize, groups: plan.groups },
      groups(wsize, 64),
    );
    part.dispose();
  }
  return gw;
}

/**
 * Gradient of {@link conv2d} with respect to its bias: the sum of `gy` over N, OH and OW.
 *
 * @param gy gradient of the output [N, O, OH, OW] (f32)
 * @returns gb [O]
 * @throws {RangeError} when `gy` is not a 4-D f32 tensor.
 */
export function conv2dBackwardBias(gy: Tensor): Tensor {
  const op = "conv2dBackwardBias";
  checkDtype(op, "gy", gy);
  checkRank4(op, "gy", gy.shape);
  const [N, O, OH, OW] = gy.shape;
  const plane = OH * OW;
  // Groups of images so that about 1024 invocations share the sum.
  const G = Math.max(1, Math.min(N, Math.ceil(1024 / O)));
  const perGroup = Math.ceil(N / G);
  const G2 = Math.ceil(N / perGroup);
  const gb = Tensor.empty([O]);
  const part = G2 > 1 ? Tensor.empty([G2 * O]) : gb;
  dispatch(
    BIAS_GRAD,
    [gy.buffer, part.buffer],
    { O, plane, N, perGroup, total: G2 * O },
    groups(G2 * O, 64),
  );
  if (part !== gb) {
    dispatch(REDUCE, [part.buffer, gb.buffer], { size: O, groups: G2 }, groups(O, 64));
    part.dispose();
  }
  return gb;
}
