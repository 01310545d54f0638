/**
 * A small reverse-mode autograd tape.
 *
 * While a tape is active ({@link Tape.run}), every differentiable function in `functions.ts`
 * whose inputs need gradients records one node: its inputs, its output and a backward rule
 * written beside its forward. Nodes are recorded in execution order, which is already a
 * topological order, so {@link Tape.backward} walks them in reverse (no recursion). Gradients are
 * accumulated where a tensor is used twice and each intermediate gradient is disposed as soon as
 * its node has consumed it. A tensor needs a gradient when it has `requiresGrad` set (parameters,
 * or the input images in teacher inversion) or is the output of a recorded node; frozen weights
 * (`requiresGrad = false`) get no gradient computed at all.
 *
 * The tape does not own forward tensors: wrap a step in `tidy()` to free them.
 *
 * @module
 */

import { add } from "../ops/elementwise.ts";
import { Tensor } from "../tensor.ts";

/**
 * A backward rule: given the gradient of the loss w.r.t. the node's output and which inputs need a
 * gradient, returns one gradient per input (`null` where not needed). Returned tensors are new
 * and owned by the tape.
 */
export type BackwardRule = (gy: Tensor, needs: readonly boolean[]) => (Tensor | null)[];

interface Node {
  inputs: readonly Tensor[];
  output: Tensor;
  backward: BackwardRule;
}

let active: Tape | null = null;

/** The `[1]` tensors of ones that {@link Tape.backward} starts from. */
const seeds = new WeakSet<Tensor>();

/**
 * Whether `gy` is the gradient a backward pass starts from (exactly 1, shape `[1]`): a loss's
 * backward rule can then hand out its gradient as it is instead of scaling it by `gy`.
 */
export function isSeed(gy: Tensor): boolean {
  return seeds.has(gy);
}

/** The tape recording now, or `null` (no-grad mode). */
export function activeTape(): Tape | null {
  return active;
}

/** Runs `fn` with no tape active: nothing is recorded (evaluation, soft targets). */
export function noGrad<T>(fn: () => T): T {
  const saved = active;
  active = null;
  try {
    return fn();
  } finally {
    active = saved;
  }
}

/** Records differentiable ops and runs them backward. */
export class Tape {
  #nodes: Node[] = [];
  #tracked = new Set<Tensor>();

  /** Runs `fn` with this tape recording. */
  run<T>(fn: () => T): T {
    const saved = active;
    active = this;
    try {
      return fn();
    } finally {
      active = saved;
    }
  }

  /** Whether `t` needs a gradient on this tape. */
  needsGrad(t: Tensor): boolean {
    return t.requiresGrad || this.#tracked.has(t);
  }

  /** Records a node if any input needs a gradient. Called by differentiable functions. */
  record(output: Tensor, inputs: readonly Tensor[], backward: BackwardRule): void {
    if (!inputs.some((t) => this.needsGrad(t))) return;
    this.#tracked.add(output);
    this.#nodes.push({ inputs, output, backward });
  }

  /** Number of recorded nodes. */
  get size(): number {
    return this.#nodes.length;
  }

  /**
   * Gradients of the scalar `loss` (shape `[1]`) w.r.t. each tensor of `wrt`.
   *
   * @returns a map from each tensor in `wrt` to its gradient (same shape), or to `null` when the
   * loss does not depend on it. The caller owns the returned gradients.
   * @throws {RangeError} when `loss` is not a one-element tensor or was not recorded.
   */
  backward(loss: Tensor, wrt: readonly Tensor[]): Map<Tensor, Tensor | null> {
    if (loss.size !== 1) throw new RangeError(`backward needs a scalar loss, got [${loss.shape}]`);
    if (!this.#tracked.has(loss)) {
      throw new RangeError("the loss was not computed on this tape from tensors that need grads");
    }
    const want = new Set(wrt);
    const grads = new Map<Tensor, Tensor>();
    const seed = Tensor.from([1], [1]);
    seeds.add(seed);
    grads.set(loss, seed);
    for (let i = this.#nodes.length - 1; i >= 0; i--) {
      const node = this.#nodes[i];
      const gy = grads.get(node.output);
      if (!gy) continue;
      const needs = node.inputs.map((t) => this.needsGrad(t));
      const gxs = node.backward(gy, needs);
      if (!want.has(node.output)) {
        grads.delete(node.output);
        gy.dispose(); // consumed
      }
      node.inputs.forEach((x, j) => {
        const gx = gxs[j];
        if (!gx) return;
        if (!needs[j]) {
          gx.dispose();
          return;
        }
        const prev = grads.get(x);
        if (prev) {
          grads.set(x, add(prev, gx));
          prev.dispose();
          gx.dispose();
        } else {
          grads.set(x, gx.shape.join() === x.shape.join() ? gx : reshaped(gx, x.shape));
        }
      });
    }
    const out = new Map<Tensor, Tensor | null>();
    for (const t of wrt) out.set(t, grads.get(t) ?? null);
    for (const [t, g] of grads) if (!want.has(t)) g.dispose();
    return out;
  }
}

function reshaped(g: Tensor, shape: readonly number[]): Tensor {
  const r = g.reshape(shape);
  g.dispose();
  return r;
}
