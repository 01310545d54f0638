/**
 * Helpers of the command-line tests: running a tool in its own process, asserting a one-line user
 * error, and writing tiny IDX data folders.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The path of `src/cli/<name>.ts`. */
export const CLI = (name: string): string =>
  fileURLToPath(new URL(`../src/cli/${name}.ts`, import.meta.url));

/** Exit code and output of one CLI process. */
export interface CliResult {
  /** Exit code. */
  code: number;
  /** Standard output, decoded. */
  stdout: string;
  /** Standard error, decoded. */
  stderr: string;
}

/** Runs `deno run -A src/cli/<tool>.ts ...args` (`tool` with `_`, e.g. `train_teacher`). */
export async function cli(
  tool: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI(tool), ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Asserts a user error: exit code 2, stderr is exactly one line `error: ...` holding every
 * `needle` (case-insensitive), and no stack trace.
 *
 * @throws {AssertionError} when any of these does not hold.
 */
export function assertUserError(r: CliResult, ...needles: string[]): void {
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(r.code, 2, `exit code ${r.code}; stderr:\n${r.stderr}`);
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace without --verbose");
  for (const n of needles) {
    assert.ok(lines[0].toLowerCase().includes(n.toLowerCase()), `"${n}" missing in: ${lines[0]}`);
  }
}

/** An IDX file of unsigned bytes with the given magic, dims and data. */
export function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic, false);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/**
 * Writes a data folder of `n` images (every pixel `pixel`) and labels per split; `edit` may
 * replace a test file.
 */
export async function dataFolder(
  dir: string,
  edit: { images?: Uint8Array; labels?: Uint8Array } = {},
  n = 5,
  pixel = 7,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const images = idx(0x803, [n, 28, 28], new Uint8Array(n * 28 * 28).fill(pixel));
  const labels = idx(0x801, [n], Uint8Array.from({ length: n }, (_, i) => i % 10));
  await Deno.writeFile(join(dir, "train-images-idx3-ubyte"), images);
  await Deno.writeFile(join(dir, "train-labels-idx1-ubyte"), labels);
  await Deno.writeFile(join(dir, "t10k-images-idx3-ubyte"), edit.images ?? images);
  await Deno.writeFile(join(dir, "t10k-labels-idx1-ubyte"), edit.labels ?? labels);
  return dir;
}

/** Runs `tasks` at most `width` at a time (CLI processes are heavy on a small machine). */
export async function inBatches<T>(tasks: (() => Promise<T>)[], width = 4): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < tasks.length; i += width) {
    out.push(...await Promise.all(tasks.slice(i, i + width).map((t) => t())));
  }
  return out;
}
