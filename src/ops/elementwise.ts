/**
 * Element-wise ops: `add` (with scales), `mul`, `affine`, `relu` and its backward, `clamp`.
 * All inputs must have equal element counts; outputs take the first input's shape.
 *
 * @module
 */

import binarySrc from "../../kernels/elementwise.wgsl" with { type: "text" };
import unarySrc from "../../kernels/unary.wgsl" with { type: "text" };
import { dispatch, groups, type Kernel, uniformLayout } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { checkSameSize } from "./_checks.ts";

/** `struct Params` of kernels/elementwise.wgsl and kernels/unary.wgsl. */
const PARAMS = uniformLayout("Params", [["n", "u32"], ["alpha", "f32"], ["beta", "f32"]]);

const k = (code: string, entryPoint: string): Kernel<"n" | "alpha" | "beta"> => ({
  name: `elementwise.${entryPoint}`,
  code,
  entryPoint,
  uniforms: PARAMS,
});
const ADD = k(binarySrc, "add");
const MUL = k(binarySrc, "mul");
const RELU_BACKWARD = k(binarySrc, "relu_backward");
const AFFINE = k(unarySrc, "affine");
const RELU = k(unarySrc, "relu");
const CLAMP = k(unarySrc, "clamp_range");

function binary(kernel: typeof ADD, a: Tensor, b: Tensor, alpha = 1, beta = 1): Tensor {
  checkSameSize(kernel.name, "a", a, "b", b);
  const out = Tensor.empty(a.shape);
  dispatch(
    kernel,
    [a.buffer, b.buffer, out.buffer],
    { n: a.size, alpha, beta },
    groups(a.size, 256),
  );
  return out;
}

function unary(kernel: typeof AFFINE, a: Tensor, alpha = 0, beta = 0): Tensor {
  const out = Tensor.empty(a.shape);
  dispatch(
    kernel,
    [a.buffer, out.buffer],
    { n: a.size, alpha, beta },
    groups(a.size, 256),
  );
  return out;
}

/** `alpha·a + beta·b` element-wise (exact up to one f32 rounding per term). */
export function add(a: Tensor, b: Tensor, alpha = 1, beta = 1): Tensor {
  return binary(ADD, a, b, alpha, beta);
}

/** `a·b` element-wise. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary(MUL, a, b);
}

/** `alpha·a + beta` element-wise (`scale` is `affine(a, s)`). */
export function affine(a: Tensor, alpha: number, beta = 0): Tensor {
  return unary(AFFINE, a, alpha, beta);
}

/** `max(a, 0)` element-wise. */
export function relu(a: Tensor): Tensor {
  return unary(RELU, a);
}

/** ReLU backward: `gy` where the forward input `x > 0`, else 0. */
export function reluBackward(x: Tensor, gy: Tensor): Tensor {
  return binary(RELU_BACKWARD, x, gy);
}

/** `clamp(a, lo, hi)` element-wise. */
export function clamp(a: Tensor, lo: number, hi: number): Tensor {
  return unary(CLAMP, a, lo, hi);
}
