/**
 * The progress bar's fields: the loss at a fixed width, durations, throughput, and an ETA that
 * counts only the work done since the bar's starting point (not reloaded work).
 */

import assert from "node:assert/strict";
import {
  etaSeconds,
  formatDuration,
  formatLoss,
  formatRate,
  LOSS_WIDTH,
} from "../src/cli/progress.ts";

Deno.test("formatLoss: fixed width from tiny to huge losses, numbers or numeric strings", () => {
  const cases: [number | string | undefined, string][] = [
    [0.123456, "0.12346"],
    [2.5, "2.5000"],
    [12345.6, "12346"],
    [0, "0.0000"],
    [1.69e30, "1.69e+30"],
    ["1690000000000000000000000000000.0000", "1.69e+30"],
    [-3.2e7, "-3.20e+7"],
    [4e-6, "4.00e-6"],
    [NaN, "NaN"],
    [Infinity, "Infinity"],
    ["0.5000", "0.50000"],
    ["-", "-"],
    [undefined, "-"],
  ];
  for (const [x, want] of cases) {
    const got = formatLoss(x);
    assert.equal(got.length, LOSS_WIDTH, `width of ${JSON.stringify(got)}`);
    assert.equal(got.trim(), want, String(x));
  }
});

Deno.test("etaSeconds: from work done since the start, not from reloaded work", () => {
  // A resumed run: 583 of 2000 reloaded at t = 100 s, 10 samples/s since then.
  assert.equal(etaSeconds(583, 2000, 583, 100, 100), NaN);
  assert.equal(etaSeconds(633, 2000, 583, 100, 105), 1367 / 10);
  // Counting the reloaded work from 0 would claim 126 samples/s: the bug this replaces.
  assert.ok(etaSeconds(633, 2000, 0, 100, 105) < 60);
  assert.equal(etaSeconds(2000, 2000, 0, 0, 10), 0);
  assert.ok(Number.isNaN(etaSeconds(5, 10, 5, 0, 0)));
});

Deno.test("formatDuration and formatRate", () => {
  assert.deepEqual([5, 65, 3599, 7620, NaN, -1].map(formatDuration), [
    "5s",
    "1m05s",
    "59m59s",
    "2h07m",
    "-",
    "-",
  ]);
  assert.equal(formatRate(500, 4, "samples"), "125 samples/s");
  assert.equal(formatRate(50, 4, "steps"), "12.5 steps/s");
  assert.equal(formatRate(1, 4, "steps"), "0.25 steps/s");
  assert.equal(formatRate(0, 4, "steps"), "- steps/s");
});
