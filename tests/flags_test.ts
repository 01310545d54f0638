/**
 * The flag parser: numbers in plain decimal only, ranges, choices and missing values.
 */

import assert from "node:assert/strict";
import { helpText, parseFlags, UsageError } from "../src/cli/flags.ts";

const SPECS = {
  n: { type: "integer", default: 3, min: 1, help: "count" },
  x: { type: "number", default: 0.5, min: 0, help: "rate" },
} as const;

const refused = (args: string[], ...fragments: string[]) =>
  assert.throws(() => parseFlags(args, SPECS), (e: unknown) => {
    assert.ok(e instanceof UsageError, String(e));
    for (const f of fragments) assert.ok(e.message.includes(f), `no "${f}" in: ${e.message}`);
    return true;
  });

Deno.test("flags: numbers are decimal; integers are digits only", () => {
  assert.equal(parseFlags(["--n", "20"], SPECS).n, 20);
  assert.equal(parseFlags(["--n", "+7"], SPECS).n, 7);
  for (const [raw, v] of [["1e-3", 1e-3], ["2.5", 2.5], [".5", 0.5], ["3.", 3], ["1E2", 100]]) {
    assert.equal(parseFlags(["--x", raw as string], SPECS).x, v, String(raw));
  }
  for (const raw of ["0x14", "0o7", "0b1", "1e3", "1_000", "2.0", " 5", "5 "]) {
    refused(["--n", raw], "--n", "decimal digits", JSON.stringify(raw));
  }
  refused(["--n", "2.5"], "--n must be a whole number");
  refused(["--n", "99999999999999999999"], "--n", "9007199254740991");
  for (const raw of ["0x14", "Infinity", "-Infinity", "NaN", "1e999", "1,5", "e3", "1e", "--"]) {
    refused([`--x=${raw}`], "--x", "decimal notation");
  }
  refused(["--x", "   "], "--x needs a value");
  refused(["--x="], "--x needs a value");
});

Deno.test("flags: ranges are checked after parsing", () => {
  refused(["--n", "0"], "--n must be ≥ 1; got 0");
  refused(["--n", "-2"], "--n must be ≥ 1; got -2");
  refused(["--x", "-1e-9"], "--x must be ≥ 0");
});

Deno.test("flags: a number flag with words takes them as strings; help shows them", () => {
  const specs = {
    b: { type: "integer", words: ["auto"], default: "auto", min: 1, help: "size" },
  } as const;
  assert.equal(parseFlags(["--b", "auto"], specs).b, "auto");
  assert.equal(parseFlags(["--b", "40"], specs).b, 40);
  assert.equal(parseFlags([], specs).b, "auto");
  assert.throws(() => parseFlags(["--b", "Auto"], specs), /--b must be a whole number/);
  assert.throws(() => parseFlags(["--b", "0"], specs), /--b must be ≥ 1/);
  assert.match(helpText("u", "a", specs), /--b <integer\|auto>/);
});
