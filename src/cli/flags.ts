/**
 * Flag tables for the command-line tools: one table drives parsing (`node:util` parseArgs),
 * validation (numbers, ranges, choices) and the `--help` text, so every flag is documented with
 * its default.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Thrown for bad command-line input; the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One flag. */
export interface FlagSpec {
  type: "string" | "number" | "integer" | "boolean";
  /** Default value shown in --help (undefined = no default). */
  default?: string | number | boolean;
  /** Help text. */
  help: string;
  /** Allowed values for strings. */
  choices?: readonly string[];
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

/** Renders the --help text for a command. */
export function helpText(usage: string, about: string, specs: Record<string, FlagSpec>): string {
  const lines = [usage, "", about, "", "Flags:"];
  for (const [name, s] of Object.entries(specs)) {
    const arg = s.type === "boolean" ? "" : ` <${s.choices ? s.choices.join("|") : s.type}>`;
    const def = s.default === undefined ? "" : ` (default: ${s.default})`;
    lines.push(`  --${name}${arg}`);
    lines.push(`      ${s.help}${def}`);
  }
  lines.push("  --help", "      Show this help and exit.");
  return lines.join("\n");
}

/**
 * Parses `args` against `specs`, applying defaults.
 *
 * @throws {UsageError} for an unknown flag, a missing value, a non-numeric or out-of-range number,
 *   or a value outside `choices`.
 */
export function parseFlags(args: string[], specs: Record<string, FlagSpec>): ParsedFlags {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, s] of Object.entries(specs)) {
    options[name] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify.*$/s, "");
    throw new UsageError(`${msg}. Run with --help to see every flag.`);
  }
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
    const v = raw.trim() === "" ? NaN : Number(raw);
    if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a number; got "${raw}"`);
    if (s.type === "integer" && !Number.isInteger(v)) {
      throw new UsageError(`--${name} must be a whole number; got "${raw}"`);
    }
    checkRange(name, v, s);
    out[name] = v;
  }
  return out;
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
