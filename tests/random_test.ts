/**
 * Tests of the seeded generator: determinism, ranges, moments, forks and exact resumption.
 */

import assert, {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual as assertNotEquals,
  throws as assertThrows,
} from "node:assert/strict";
import { Rng } from "../src/random.ts";

function draws(r: Rng, k: number): number[] {
  return Array.from({ length: k }, () => r.uniform());
}

Deno.test("Rng: the same seed gives the same sequence; different seeds differ", () => {
  assertEquals(draws(new Rng(42), 20), draws(new Rng(42), 20));
  assertNotEquals(draws(new Rng(42), 20), draws(new Rng(43), 20));
  // Seeds that differ only above bit 32 give different streams too.
  assertNotEquals(draws(new Rng(1), 5), draws(new Rng(1 + 2 ** 32), 5));
  assertNotEquals(draws(new Rng(-1), 5), draws(new Rng(1), 5));
});

Deno.test("Rng: a fixed seed reproduces recorded values (guards against silent changes)", () => {
  const r = new Rng(2024);
  const got = [r.nextU32(), r.nextU32(), r.int(1000), r.int(1000)];
  const again = new Rng(2024);
  assertEquals([again.nextU32(), again.nextU32(), again.int(1000), again.int(1000)], got);
  // Recorded once from this implementation; a change here changes every seeded run.
  assertEquals(got, RECORDED_2024);
});
const RECORDED_2024 = [759344045, 2530433154, 514, 912];

Deno.test("Rng: uniform is in [0,1) with mean 1/2 and variance 1/12", () => {
  const r = new Rng(7);
  const n = 200_000;
  let s = 0, s2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    assert(u >= 0 && u < 1);
    s += u;
    s2 += u * u;
  }
  const mean = s / n;
  const v = s2 / n - mean * mean;
  // Standard error of the mean is 0.29/sqrt(n) ≈ 6.5e-4: allow 5 s.e.
  assert(Math.abs(mean - 0.5) < 3.3e-3, `mean ${mean}`);
  assert(Math.abs(v - 1 / 12) < 2e-3, `variance ${v}`);
});

Deno.test("Rng: normal and fillNormal have the requested mean and standard deviation", () => {
  const r = new Rng(11);
  const n = 100_001; // odd: exercises the unpaired last element
  const out = r.fillNormal(new Float32Array(n), 3, 2);
  let s = 0, s2 = 0;
  for (const x of out) {
    s += x;
    s2 += x * x;
  }
  const mean = s / n;
  const sd = Math.sqrt(s2 / n - mean * mean);
  assert(Math.abs(mean - 3) < 0.03, `mean ${mean}`); // s.e. 2/sqrt(n) ≈ 0.0063
  assert(Math.abs(sd - 2) < 0.03, `sd ${sd}`);

  let t = 0, t2 = 0, t4 = 0;
  const m = 100_000;
  for (let i = 0; i < m; i++) {
    const z = r.normal();
    assert(Number.isFinite(z));
    t += z;
    t2 += z * z;
    t4 += z ** 4;
  }
  assert(Math.abs(t / m) < 0.02, `normal mean ${t / m}`);
  assert(Math.abs(t2 / m - 1) < 0.03, `normal variance ${t2 / m}`);
  assert(Math.abs(t4 / m - 3) < 0.15, `normal 4th moment ${t4 / m}`); // Gaussian kurtosis
});

Deno.test("Rng: int(n) is in [0,n) and hits every value about equally often", () => {
  const r = new Rng(3);
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 70_000; i++) {
    const k = r.int(7);
    assert(Number.isInteger(k) && k >= 0 && k < 7);
    counts[k]++;
  }
  for (const c of counts) assert(Math.abs(c - 10_000) < 500, `counts ${counts}`);
  assertEquals(r.int(1), 0);
  assertThrows(() => r.int(0), RangeError);
  assertThrows(() => r.int(2.5), RangeError);
  assertThrows(() => new Rng(0.5), RangeError);
});

Deno.test("Rng: fillUniform stays in [lo,hi) even where float32 rounding would reach hi", () => {
  const r = new Rng(5);
  const a = r.fillUniform(new Float32Array(50_000), -0.25, 0.75);
  let s = 0;
  for (const x of a) {
    assert(x >= -0.25 && x < 0.75, `${x}`);
    s += x;
  }
  assert(Math.abs(s / a.length - 0.25) < 0.01);
  // A range so narrow that most draws round to one of two float32 values.
  const hi = 1 + 2 ** -20;
  for (const x of r.fillUniform(new Float32Array(1000), 1, hi)) assert(x >= 1 && x < hi);
  assertThrows(() => r.fillUniform(new Float32Array(1), 1, 1), RangeError);
  assertThrows(() => r.fillNormal(new Float32Array(1), 0, -1), RangeError);
});

Deno.test("Rng: shuffle is a deterministic permutation", () => {
  const a = Array.from({ length: 100 }, (_, i) => i);
  const b = new Rng(9).shuffle([...a]);
  assertEquals([...b].sort((x, y) => x - y), a);
  assertNotEquals(b, a);
  assertEquals(new Rng(9).shuffle([...a]), b);
  const u = new Rng(9).shuffle(Uint32Array.from(a));
  assertEquals([...u], b);
});

Deno.test("Rng: fork is deterministic, label-specific and independent of draws", () => {
  const r = new Rng(100);
  const f1 = draws(r.fork("init"), 10);
  draws(r, 1000); // drawing from the parent does not change its forks
  assertEquals(draws(r.fork("init"), 10), f1);
  assertEquals(draws(new Rng(100).fork("init"), 10), f1);
  assertNotEquals(draws(r.fork("noise"), 10), f1);
  assertNotEquals(draws(r.fork(1), 10), draws(r.fork("1"), 10));
  assertNotEquals(draws(new Rng(101).fork("init"), 10), f1);
  // Forking does not advance the parent.
  const p = new Rng(100), q = new Rng(100);
  p.fork("x");
  assertEquals(draws(p, 5), draws(q, 5));
  // Nested forks are deterministic and differ from their parent.
  assertEquals(draws(r.fork("a").fork("b"), 5), draws(new Rng(100).fork("a").fork("b"), 5));
  assertNotEquals(draws(r.fork("a").fork("b"), 5), draws(r.fork("a"), 5));
  // A fork's stream is uncorrelated with its parent's (sample correlation of 20k pairs).
  const x = draws(new Rng(100), 20_000), y = draws(new Rng(100).fork("init"), 20_000);
  let sxy = 0;
  for (let i = 0; i < x.length; i++) sxy += (x[i] - 0.5) * (y[i] - 0.5);
  const corr = sxy / x.length / (1 / 12);
  assert(Math.abs(corr) < 0.035, `correlation ${corr}`); // s.e. ≈ 0.007
});

Deno.test("Rng: state()/fromState() resume exactly, including a pending normal", () => {
  const r = new Rng(77).fork("run");
  draws(r, 13);
  r.normal(); // leaves the second Box–Muller value pending
  const s = JSON.parse(JSON.stringify(r.state()));
  const resumed = Rng.fromState(s);
  const seqA = [r.normal(), r.normal(), r.uniform(), r.int(1000)];
  const seqB = [resumed.normal(), resumed.normal(), resumed.uniform(), resumed.int(1000)];
  assertEquals(seqB, seqA);
  // Forks of a resumed generator match forks of the original.
  assertEquals(draws(resumed.fork("z"), 5), draws(r.fork("z"), 5));
  assertThrows(() => Rng.fromState([1, 2, 3]), RangeError);
  assertThrows(() => Rng.fromState([0, 0, 0, 0, 1, 2, 3, 4, 0, 0]), RangeError);
});
