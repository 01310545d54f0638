/**
 * Flag tables for the command-line tools: one table drives parsing (`node:util` parseArgs),
 * validation (numbers, ranges, choices) and the `--help` text, so every flag is documented with
 * its default.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";

export { UsageError };

/** One flag. */
export interface FlagSpec {
  type: "string" | "number" | "integer" | "boolean";
  /** Default value (undefined = no default value). */
  default?: string | number | boolean;
  /** What --help shows as the default when it is not a plain value (e.g. "standard paths"). */
  defaultText?: string;
  /** Help text. */
  help: string;
  /** Allowed values for strings. */
  choices?: readonly string[];
  /** Words a number or integer flag takes besides numbers (e.g. `auto`), kept as strings. */
  words?: readonly string[];
  /** Inclusive lower bound for numbers. */
  min?: number;
  /** Inclusive upper bound for numbers. */
  max?: number;
  /** True when the lower bound is exclusive (e.g. tau > 0). */
  exclusiveMin?: boolean;
}

/** Parsed values: string, number, boolean or undefined. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** Parsed flags, plus `help` and the set of flags given explicitly on the command line. */
export interface ParsedFlags {
  [flag: string]: string | number | boolean | undefined | Set<string>;
  help?: boolean;
  explicit: Set<string>;
}

/** Options of {@link parseFlags}. */
export interface ParseOptions {
  /** Arguments that are not flags (e.g. folders), in order; without it they are refused. */
  positionals?: string[];
}

/** Renders the --help text for a command. */
export function helpText(usage: string, about: string, specs: Record<string, FlagSpec>): string {
  const lines = [usage, "", about, "", "Flags:"];
  for (const [name, s] of Object.entries(specs)) {
    const arg = s.type === "boolean" ? "" : ` <${flagArgument(s)}>`;
    const shown = s.defaultText ?? s.default;
    const def = shown === undefined ? "" : ` (default: ${shown})`;
    lines.push(`  --${name}${arg}`);
    lines.push(`      ${s.help}${def}`);
  }
  lines.push("  --help", "      Show this help and exit.");
  lines.push("  --verbose", "      Print the stack trace of an error.");
  return lines.join("\n");
}

/** What a flag takes, for help texts: `a|b` for choices, `integer|auto` with words, else its type. */
export function flagArgument(s: FlagSpec): string {
  if (s.choices) return s.choices.join("|");
  return [s.type, ...(s.words ?? [])].join("|");
}

/**
 * Joins `--flag -1` into `--flag=-1` for flags that take a value, so negative numbers reach the
 * range check (which then names the flag and its bounds) instead of being taken for a flag.
 *
 * @throws {UsageError} when a flag that takes a value is last or followed by another `--flag`.
 */
function joinDashValues(args: string[], specs: Record<string, FlagSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = args[i + 1];
    const spec = a.startsWith("--") && !a.includes("=") ? specs[a.slice(2)] : undefined;
    if (spec && spec.type !== "boolean" && (next === undefined || next.startsWith("--"))) {
      const example = spec.default !== undefined ? ` (e.g. ${a} ${spec.default})` : "";
      throw new UsageError(`${a} needs a value${example}. Run with --help to see every flag.`);
    }
    if (
      spec && spec.type !== "boolean" && next !== undefined && next.startsWith("-") &&
      !next.startsWith("--")
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Parses `args` against `specs`, applying defaults.
 *
 * @throws {UsageError} for an unknown flag, a missing value, a non-numeric or out-of-range number,
 *   or a value outside `choices`.
 */
export function parseFlags(
  args: string[],
  specs: Record<string, FlagSpec>,
  opts: ParseOptions = {},
): ParsedFlags {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, s] of Object.entries(specs)) {
    options[name] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  const joined = joinDashValues(args, specs);
  let parsed;
  try {
    parsed = parseArgs({
      args: joined,
      options,
      strict: true,
      allowPositionals: opts.positionals !== undefined,
    });
  } catch (e) {
    const msg = (e as Error).message.replace(/\s*To specify.*$/s, "").replace(/\s+/g, " ")
      .replace(/[.\s]+$/, "");
    throw new UsageError(
      `${msg}${/[?!]$/.test(msg) ? "" : "."} Run with --help to see every flag.`,
    );
  }
  opts.positionals?.push(...parsed.positionals);
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const out: ParsedFlags = {
    help: values.help as boolean | undefined,
    explicit: new Set(Object.keys(values).filter((k) => values[k] !== undefined)),
  };
  for (const [name, s] of Object.entries(specs)) {
    const raw = values[name];
    if (raw === undefined) {
      out[name] = s.default;
      continue;
    }
    if (s.type === "boolean" || typeof raw === "boolean") {
      out[name] = raw;
      continue;
    }
    if (s.type === "string") {
      if (s.choices && !s.choices.includes(raw)) {
        throw new UsageError(`--${name} must be one of ${s.choices.join(", ")}; got "${raw}"`);
      }
      out[name] = raw;
      continue;
    }
    if (s.words?.includes(raw)) {
      out[name] = raw;
      continue;
    }
    const v = parseNumber(name, raw, s);
    checkRange(name, v, s);
    out[name] = v;
  }
  return out;
}

/** Plain decimal integers: digits with an optional sign. */
const DECIMAL_INTEGER = /^[+-]?[0-9]+$/;
/** Plain decimal numbers: digits with an optional sign, fraction and exponent (`1.5e-3`). */
const DECIMAL_NUMBER = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

/**
 * The value of `--name raw` for a `number` or `integer` flag. Numbers are written in plain
 * decimal: `number` flags take digits with an optional sign, fraction and exponent (`0.001`,
 * `1e-3`); `integer` flags take digits only (`20`, `-1`). Hexadecimal, octal and binary prefixes
 * (`0x14`, `0o7`, `0b1`), `Infinity`, `NaN`, surrounding spaces and empty values are refused.
 *
 * @throws {UsageError} naming the flag and the value, when `raw` is not such a number, or an
 *   integer is beyond ±(2^53 − 1).
 */
export function parseNumber(name: string, raw: string, s: Pick<FlagSpec, "type">): number {
  const shown = JSON.stringify(raw);
  if (raw.trim() === "") {
    throw new UsageError(`--${name} needs a value; got ${raw === "" ? "an empty one" : shown}`);
  }
  if (s.type === "integer") {
    if (DECIMAL_INTEGER.test(raw)) {
      const v = Number(raw);
      if (!Number.isSafeInteger(v)) {
        throw new UsageError(
          `--${name} must be between ±${Number.MAX_SAFE_INTEGER}; got ${shown}`,
        );
      }
      return v;
    }
    const why = DECIMAL_NUMBER.test(raw) && !Number.isInteger(Number(raw))
      ? "a whole number"
      : "a whole number written in decimal digits (e.g. 20)";
    throw new UsageError(`--${name} must be ${why}; got ${shown}`);
  }
  const v = Number(raw);
  if (!DECIMAL_NUMBER.test(raw) || !Number.isFinite(v)) {
    throw new UsageError(
      `--${name} must be a finite number in decimal notation (e.g. 0.5 or 1e-3); got ${shown}`,
    );
  }
  return v;
}

/** @throws {UsageError} when `v` is outside the spec's range. */
export function checkRange(name: string, v: number, s: FlagSpec): void {
  if (s.min !== undefined && (s.exclusiveMin ? v <= s.min : v < s.min)) {
    throw new UsageError(`--${name} must be ${s.exclusiveMin ? ">" : "≥"} ${s.min}; got ${v}`);
  }
  if (s.max !== undefined && v > s.max) {
    throw new UsageError(`--${name} must be ≤ ${s.max}; got ${v}`);
  }
}
