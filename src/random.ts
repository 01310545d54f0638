/**
 * Seeded random numbers for everything that must be reproducible: weight initialisation, noise
 * inputs of the synthesiser, data shuffling.
 *
 * {@link Rng} wraps pure-rand's xoroshiro128+ generator (period 2^128 − 1). Three properties matter
 * for training runs:
 * - the same seed gives the same numbers on every machine (only integer arithmetic and IEEE
 *   doubles are involved);
 * - {@link Rng.fork} derives an independent stream from a label, so adding a new consumer of random
 *   numbers does not shift the numbers any other consumer sees;
 * - {@link Rng.state} / {@link Rng.fromState} capture the exact position, so a resumed run draws
 *   the same numbers as an uninterrupted one.
 *
 * @example
 * ```ts
 * import { Rng } from "./random.ts";
 * const rng = new Rng(42);
 * const init = rng.fork("teacher-init");
 * const w = new Float32Array(16);
 * init.fillNormal(w, 0, 0.1);
 * const saved = rng.state();
 * const a = rng.uniform();
 * const b = Rng.fromState(saved).uniform(); // a === b
 * ```
 *
 * @module
 */

import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import { uniformInt } from "pure-rand/distribution/uniformInt";

/** The part of pure-rand's generator interface this module uses. */
interface Generator32 {
  /** A uniform 32-bit value as a signed integer. */
  next(): number;
  /** The four 32-bit words of the xoroshiro128+ state. */
  getState(): readonly number[];
}

/** Length of the array returned by {@link Rng.state}. */
const STATE_LENGTH = 10;
const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const TWO_PI = 2 * Math.PI;

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** Four state words from a list of 32-bit inputs; never the all-zero (fixed-point) state. */
function mixWords(inputs: readonly number[], salt: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    let h = fmix32(salt ^ Math.imul(i + 1, 0x9e3779b9));
    for (const x of inputs) h = fmix32(Math.imul(h ^ x, 0x27d4eb2f) + 0x165667b1);
    out.push(h);
  }
  if ((out[0] | out[1] | out[2] | out[3]) === 0) out[0] = 1;
  return out;
}

/** A float64 value as two 32-bit words, so it can be hashed. */
function floatWords(x: number): number[] {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x, true);
  return [v.getInt32(0, true), v.getInt32(4, true)];
}

/** The largest float32 below `x` (for keeping float32 draws strictly under an upper bound). */
function float32Below(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (x > 0) u[0] -= 1;
  else if (x < 0) u[0] += 1;
  else u[0] = 0x80000001; // -(smallest subnormal)
  return f[0];
}

/**
 * A seeded pseudo-random generator (xoroshiro128+ from pure-rand) with the distributions training
 * needs. Not for cryptography.
 */
export class Rng {
  #gen: Generator32;
  /** The stream's starting state: forks derive from it, so they ignore how much was drawn. */
  #key: readonly number[];
  /** The second value of the last Box–Muller pair, not yet returned by {@link normal}. */
  #spare: number | null = null;

  /**
   * A generator for `seed`.
   * @param seed any safe integer (negative allowed); all 53 bits are used.
   * @throws {RangeError} if `seed` is not a safe integer.
   */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`Rng seed must be a safe integer, got ${seed}`);
    }
    const lo = seed | 0;
    const hi = Math.floor(seed / 4294967296) | 0;
    const words = mixWords([lo, hi], 0x5eed);
    this.#gen = xoroshiro128plusFromState(words);
    this.#key = Object.freeze(words);
  }

  /** Builds a generator from raw parts (used by fork and fromState). */
  static #make(gen: number[], key: number[], spare: number | null): Rng {
    const r = new Rng(0);
    r.#gen = xoroshiro128plusFromState(gen);
    r.#key = Object.freeze([...key]);
    r.#spare = spare;
    return r;
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    return this.#gen.next() >>> 0;
  }

  /** A uniform double in [0, 1) with 53 random bits (from the high bits of two draws). */
  uniform(): number {
    const a = this.#gen.next() >>> 5; // 27 bits
    const b = this.#gen.next() >>> 6; // 26 bits
    return (a * 67108864 + b) * TWO_POW_M53;
  }

  /**
   * A standard normal deviate (Box–Muller; the second value of each pair is kept for the next
   * call and is part of {@link state}).
   */
  normal(): number {
    if (this.#spare !== null) {
      const z = this.#spare;
      this.#spare = null;
      return z;
    }
    const [z0, z1] = this.#boxMuller();
    this.#spare = z1;
    return z0;
  }

  #boxMuller(): [number, number] {
    const u1 = 1 - this.uniform(); // (0, 1]: log is finite
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    const t = TWO_PI * u2;
    return [r * Math.cos(t), r * Math.sin(t)];
  }

  /**
   * A uniform integer in [0, n) without modulo bias.
   * @throws {RangeError} if `n` is not a safe integer ≥ 1.
   */
  int(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new RangeError(`Rng.int(n) needs a safe integer n >= 1, got ${n}`);
    }
    return n === 1 ? 0 : uniformInt(this.#gen as Parameters<typeof uniformInt>[0], 0, n - 1);
  }

  /** Shuffles `a` in place (Fisher–Yates) and returns it. */
  shuffle<T extends unknown[] | Uint32Array>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /**
   * Fills `out` with uniform float32 values in [lo, hi) (24 random bits each; a value that would
   * round up to `hi` in float32 is replaced by the float32 just below it).
   * @throws {RangeError} if `lo`/`hi` are not finite or `lo >= hi`.
   */
  fillUniform(out: Float32Array, lo = 0, hi = 1): Float32Array {
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi)) {
      throw new RangeError(`fillUniform needs finite lo < hi, got lo=${lo}, hi=${hi}`);
    }
    const span = hi - lo;
    const below = float32Below(Math.fround(hi));
    for (let i = 0; i < out.length; i++) {
      const v = Math.fround(lo + span * ((this.#gen.next() >>> 8) * TWO_POW_M24));
      out[i] = v >= hi ? below : v;
    }
    return out;
  }

  /**
   * Fills `out` with normal float32 values of the given mean and standard deviation (Box–Muller,
   * both values of each pair used; independent of the spare kept by {@link normal}).
   * @throws {RangeError} if `mean`/`std` are not finite or `std < 0`.
   */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0) {
      throw new RangeError(`fillNormal needs finite mean and std >= 0, got ${mean}, ${std}`);
    }
    const n = out.length;
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const [z0, z1] = this.#boxMuller();
      out[i] = mean + std * z0;
      out[i + 1] = mean + std * z1;
    }
    if (i < n) out[i] = mean + std * this.#boxMuller()[0];
    return out;
  }

  /**
   * An independent generator derived from this stream's seed lineage and `label`. It does not
   * advance this generator and does not depend on how many numbers were drawn from it, so
   * `new Rng(s).fork("x")` always yields the same stream. Forks of forks work the same way.
   * @throws {RangeError} if `label` is a number that is not finite.
   */
  fork(label: string | number): Rng {
    let words: number[];
    if (typeof label === "number") {
      if (!Number.isFinite(label)) throw new RangeError(`Rng.fork label must be finite: ${label}`);
      words = [0x6e756d, ...floatWords(label)];
    } else {
      const bytes = new TextEncoder().encode(label);
      words = [0x737472, bytes.length];
      for (const b of bytes) words.push(b);
    }
    const key = mixWords([...this.#key, ...words], 0xf0e1);
    return Rng.#make(key, key, null);
  }

  /**
   * The exact position of this generator as 10 JSON-safe numbers (4 state words, 4 words of the
   * stream key used by {@link fork}, a flag and the pending Box–Muller value).
   */
  state(): number[] {
    return [
      ...this.#gen.getState(),
      ...this.#key,
      this.#spare === null ? 0 : 1,
      this.#spare ?? 0,
    ];
  }

  /**
   * A generator at the position saved by {@link state}.
   * @throws {RangeError} if `s` is not an array produced by {@link state}.
   */
  static fromState(s: readonly number[]): Rng {
    const ok = Array.isArray(s) && s.length === STATE_LENGTH &&
      s.slice(0, 8).every((w) => Number.isInteger(w) && w >= -(2 ** 31) && w < 2 ** 32) &&
      (s[8] === 0 || s[8] === 1) && Number.isFinite(s[9]);
    if (!ok) {
      throw new RangeError(
        `Rng.fromState: expected the ${STATE_LENGTH}-number array from Rng.state(), got ` +
          JSON.stringify(s),
      );
    }
    const gen = s.slice(0, 4).map((w) => w | 0);
    if (gen.every((w) => w === 0)) {
      throw new RangeError("Rng.fromState: all-zero generator state is invalid");
    }
    return Rng.#make(gen, s.slice(4, 8).map((w) => w | 0), s[8] === 1 ? s[9] : null);
  }
}
