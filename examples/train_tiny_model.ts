/**
 * Trains a 2-layer perceptron with the tensors, the differentiable functions and the autograd tape
 * directly — no high-level API — on a synthetic problem: points in the plane drawn around four
 * centres (±2, ±2), the label being the centre's index, so the classes are separable.
 *
 * Model: `[N, 2] → linear 2→16 → ReLU → linear 16→4` logits; loss: mean cross-entropy; optimiser:
 * Adam. Each step is queued GPU work inside `tidy()` (which frees the step's intermediates); the
 * loss is read back only every `LOG_EVERY` steps, since each read is a GPU round trip.
 *
 * Usage: `deno run -A examples/train_tiny_model.ts`; environment: `STEPS` (default 200),
 * `POINTS` (256), `SEED` (0). Prints the loss as it falls and the final training accuracy.
 *
 * @module
 */

import { Adam, crossEntropyLoss, initGpu, linear, relu, Rng, Tape, Tensor, tidy } from "../mod.ts";

const env = (name: string, fallback: number) => Number(Deno.env.get(name) ?? fallback);
const steps = env("STEPS", 200);
const n = env("POINTS", 256);
const LOG_EVERY = 25;
await initGpu();

// The data: x [n, 2], labels [n] (u32), on the GPU for the whole run.
const rng = new Rng(env("SEED", 0));
const xs = new Float32Array(n * 2);
const ys = new Uint32Array(n);
for (let i = 0; i < n; i++) {
  ys[i] = rng.int(4);
  xs[2 * i] = (ys[i] & 1 ? 2 : -2) + 0.7 * rng.normal();
  xs[2 * i + 1] = (ys[i] & 2 ? 2 : -2) + 0.7 * rng.normal();
}
const x = Tensor.from(xs, [n, 2]);
const labels = Tensor.from(ys);

// Parameters: He-normal weights (std √(2/fan-in)), zero biases; requiresGrad marks them for the tape.
const param = (shape: number[], std: number) => {
  const size = shape.reduce((a, b) => a * b);
  const t = Tensor.from(rng.fillNormal(new Float32Array(size), 0, std), shape);
  t.requiresGrad = true;
  return t;
};
const w1 = param([16, 2], 1);
const b1 = param([16], 0);
const w2 = param([4, 16], Math.sqrt(2 / 16));
const b2 = param([4], 0);
const params = [w1, b1, w2, b2];
const adam = new Adam(params, { lr: 0.05 });
const forward = () => linear(relu(linear(x, w1, b1)), w2, b2);

let first = NaN;
let last = NaN;
for (let step = 1; step <= steps; step++) {
  const report = step === 1 || step % LOG_EVERY === 0 || step === steps;
  const loss = tidy(() => {
    const tape = new Tape();
    const loss = tape.run(() => crossEntropyLoss(forward(), labels));
    adam.step(tape.backward(loss, params)); // the gradients are freed by tidy
    return report ? loss : undefined; // kept (not freed by tidy) only when it will be read
  });
  if (loss) {
    last = (await loss.read())[0];
    loss.dispose();
    if (step === 1) first = last;
    console.log(`step ${step}: loss ${last.toFixed(4)}`);
  }
}

// Training accuracy from the logits read back once.
const logits = tidy(forward);
const z = await logits.read();
let correct = 0;
for (let i = 0; i < n; i++) {
  const row = Array.from(z.subarray(4 * i, 4 * i + 4));
  if (row.indexOf(Math.max(...row)) === ys[i]) correct++;
}
console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)}; accuracy ${(correct / n).toFixed(4)}`);
for (const t of [logits, x, labels, ...params]) t.dispose();
adam.dispose();
