/**
 * The feature-space model of a teacher layer (Wang, "Data-Free Knowledge Distillation with Soft
 * Targeted Transfer Set Synthesis", AAAI 2021, §3): the pre-activation output `s^l ∈ R^k` of layer
 * `l` is modelled as `N_k(μ, Σ)` with `Σ = D R D`, `D = σ I` and
 * `R_ij = w_i·w_j / (‖w_i‖ ‖w_j‖)`, `w_i` the incoming weight vector of unit `i` (row `i` of the
 * layer's weight matrix).
 *
 * `R` is a Gram matrix of unit vectors, so it is only positive semi-definite when `k` exceeds the
 * layer's input width or two units are parallel. Sampling uses a **jittered Cholesky** factor:
 * `R + εI = L Lᵀ` with the smallest ε in 0, 1e-10, 1e-9, … that succeeds; `s = μ + σ L z`,
 * `z ~ N(0, I)`. Computed in float64 on the host (k ≤ a few hundred).
 *
 * @module
 */

import type { Rng } from "../random.ts";

/** A multivariate normal over a layer's pre-activations. */
export interface FeatureModel {
  /** Layer whose pre-activation is modelled, e.g. `"fc2"`, or `"fc3"` for the logits. */
  layer: string;
  /** Dimension k (number of units). */
  k: number;
  /** σ, the standard deviation of every unit. */
  sigma: number;
  /** μ (length k). */
  mean: Float64Array;
  /** Correlation matrix R, k×k row-major. */
  correlation: Float64Array;
  /** Lower-triangular L with `L Lᵀ = R + jitter·I`, k×k row-major. */
  cholesky: Float64Array;
  /** The jitter ε that was needed. */
  jitter: number;
}

/**
 * `R_ij = w_i·w_j / (‖w_i‖ ‖w_j‖)` for a weight matrix `w: [k, in]` (row-major).
 * A zero row gives a zero row/column with 1 on the diagonal.
 */
export function cosineCorrelation(
  w: Float32Array | Float64Array,
  k: number,
  inFeatures: number,
): Float64Array {
  if (w.length !== k * inFeatures) {
    throw new RangeError(`weights of length ${w.length} are not [${k}, ${inFeatures}]`);
  }
  const norms = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let j = 0; j < inFeatures; j++) s += w[i * inFeatures + j] ** 2;
    norms[i] = Math.sqrt(s);
  }
  const r = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let t = 0; t < inFeatures; t++) dot += w[i * inFeatures + t] * w[j * inFeatures + t];
      const v = i === j ? 1 : norms[i] > 0 && norms[j] > 0 ? dot / (norms[i] * norms[j]) : 0;
      r[i * k + j] = v;
      r[j * k + i] = v;
    }
  }
  return r;
}

/**
 * Cholesky factor of `a + jitter·I` (k×k, symmetric), or `null` when it is not positive definite.
 */
export function cholesky(a: Float64Array, k: number, jitter = 0): Float64Array | null {
  const l = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * k + j] + (i === j ? jitter : 0);
      for (let t = 0; t < j; t++) s -= l[i * k + t] * l[j * k + t];
      if (i === j) {
        if (!(s > 0)) return null;
        l[i * k + i] = Math.sqrt(s);
      } else {
        l[i * k + j] = s / l[j * k + j];
      }
    }
  }
  return l;
}

/**
 * Builds the feature model of a layer from its weight matrix `w: [k, in]`.
 *
 * @param sigma σ > 0 (the paper uses 1.5 on MNIST).
 * @throws {RangeError} on a non-positive σ or when no jitter up to 1e-2 makes R + εI definite.
 */
export function buildFeatureModel(
  layer: string,
  w: Float32Array,
  k: number,
  inFeatures: number,
  sigma: number,
  mean?: Float64Array,
): FeatureModel {
  if (!(sigma > 0)) throw new RangeError(`sigma must be > 0; got ${sigma}`);
  const correlation = cosineCorrelation(w, k, inFeatures);
  for (const jitter of [0, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]) {
    const l = cholesky(correlation, k, jitter);
    if (l) {
      return {
        layer,
        k,
        sigma,
        mean: mean ?? new Float64Array(k),
        correlation,
        cholesky: l,
        jitter,
      };
    }
  }
  throw new RangeError(`the correlation matrix of ${layer} is not positive semi-definite`);
}

/**
 * Draws `n` samples `s = μ + σ L z`, `z ~ N(0, I_k)` (so `s ~ N(μ, σ²(R + εI))`), into a new
 * `[n, k]` row-major f32 array; consumes `n·k` standard normals from `rng`.
 */
export function sampleFeatures(model: FeatureModel, n: number, rng: Rng): Float32Array {
  const { k, cholesky: l, sigma, mean } = model;
  const out = new Float32Array(n * k);
  const z = new Float64Array(k);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < k; i++) z[i] = rng.normal();
    for (let i = 0; i < k; i++) {
      let v = 0;
      for (let j = 0; j <= i; j++) v += l[i * k + j] * z[j];
      out[s * k + i] = mean[i] + sigma * v;
    }
  }
  return out;
}
