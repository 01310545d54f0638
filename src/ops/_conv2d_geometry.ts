/**
 * The sizes of a 2-D convolution: its options (stride and padding) validated, the geometry read
 * from the input and weight shapes, and the output shape.
 *
 * @module
 */

import { checkRank4 } from "./_checks.ts";

/** Stride and zero padding of a convolution (both square). */
export interface Conv2dOptions {
  /** Step between output positions, default 1. */
  stride?: number;
  /** Zeros added on every side of the input, default 0. */
  padding?: number;
}

/** Floats in the uniform buffer that holds one chunk of weights (64 KiB). */
export const UNIFORM_FLOATS = 16384;

/**
 * The sizes of one convolution (NCHW), computed and validated once from the input shape, the
 * weight shape and the options, then read by every kernel launch of the op (as TF.js's
 * `Conv2DInfo`). Kernels may be non-square: `kernelHeight × kernelWidth`.
 */
export interface Conv2dGeometry {
  batch: number;
  inChannels: number;
  inHeight: number;
  inWidth: number;
  outChannels: number;
  kernelHeight: number;
  kernelWidth: number;
  stride: number;
  padding: number;
  outHeight: number;
  outWidth: number;
}

function options(op: string, opts: Conv2dOptions | undefined): { stride: number; padding: number } {
  const stride = opts?.stride ?? 1;
  const padding = opts?.padding ?? 0;
  if (!Number.isInteger(stride) || stride < 1) {
    throw new RangeError(`${op}: stride ${stride} must be an integer >= 1`);
  }
  if (!Number.isInteger(padding) || padding < 0) {
    throw new RangeError(`${op}: padding ${padding} must be an integer >= 0`);
  }
  return { stride, padding };
}

/**
 * The geometry of the convolution of an `inputShape` ([N, C, H, W]) input by `weightShape`
 * ([O, C, kH, kW]) weights with `opts`.
 *
 * @throws {RangeError} when a shape is not 4-D and non-empty, the channel counts differ, the
 *   kernel exceeds the padded input or 2048 taps, or stride/padding are invalid.
 */
export function conv2dGeometry(
  op: string,
  inputShape: readonly number[],
  weightShape: readonly number[],
  opts: Conv2dOptions | undefined,
): Conv2dGeometry {
  checkRank4(op, "input", inputShape);
  checkRank4(op, "weight", weightShape);
  const [batch, inChannels, inHeight, inWidth] = inputShape;
  const [outChannels, weightChannels, kernelHeight, kernelWidth] = weightShape;
  if (weightChannels !== inChannels) {
    throw new RangeError(
      `${op}: weight [${weightShape}] has ${weightChannels} input channels, ` +
        `input [${inputShape}] has ${inChannels}`,
    );
  }
  const { stride, padding } = options(op, opts);
  const [paddedHeight, paddedWidth] = [inHeight + 2 * padding, inWidth + 2 * padding];
  if (paddedHeight < kernelHeight || paddedWidth < kernelWidth) {
    throw new RangeError(
      `${op}: kernel ${kernelHeight}x${kernelWidth} is larger than the padded input ` +
        `${paddedHeight}x${paddedWidth} (input [${inputShape}], padding ${padding})`,
    );
  }
  if (kernelHeight * kernelWidth * 8 > UNIFORM_FLOATS) {
    throw new RangeError(
      `${op}: kernel ${kernelHeight}x${kernelWidth} is too large (at most 2048 taps)`,
    );
  }
  const outHeight = Math.floor((paddedHeight - kernelHeight) / stride) + 1;
  const outWidth = Math.floor((paddedWidth - kernelWidth) / stride) + 1;
  return {
    batch,
    inChannels,
    inHeight,
    inWidth,
    outChannels,
    kernelHeight,
    kernelWidth,
    stride,
    padding,
    outHeight,
    outWidth,
  };
}

/** The output shape [N, O, OH, OW] of a geometry. */
export function outputShape(g: Conv2dGeometry): number[] {
  return [g.batch, g.outChannels, g.outHeight, g.outWidth];
}
