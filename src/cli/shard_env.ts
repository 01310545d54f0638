/**
 * Which shard a `deno task synth` process makes: `--shard i/n`, else the index a batch engine
 * hands each worker:
 *
 * - Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` (0-based); the count is not given by
 *   Kubernetes, so `DFKD_SHARD_COUNT` must hold it (the Job's `completions`);
 * - Slurm job array: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, and
 *   `SLURM_ARRAY_TASK_MIN` / `SLURM_ARRAY_TASK_STEP` when the array does not start at 0 or
 *   steps by more than 1 (`--array=1-8` is shards 0…7 of 8).
 *
 * @module
 */

import type { Shard } from "../dfkd/shard.ts";
import { UsageError } from "./flags.ts";

/** A shard, and where it came from (for the run's first lines). */
export interface ShardChoice extends Shard {
  /** `--shard`, or the environment variables it came from. */
  source: string;
}

/** Parses `i/n` (decimal digits, 0 ≤ i < n). @throws {UsageError} naming `what`. */
export function parseShard(text: string, what = "--shard"): Shard {
  const m = /^([0-9]+)\/([0-9]+)$/.exec(text.trim());
  if (!m) {
    throw new UsageError(
      `${what} must be i/n, shard i of n counted from 0 (e.g. 0/4); got "${text}"`,
    );
  }
  const [index, count] = [Number(m[1]), Number(m[2])];
  if (!Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new UsageError(`${what} ${text}: the index must be in 0…n−1 and n at least 1`);
  }
  return { index, count };
}

/** A whole number ≥ `min` from variable `name`. @throws {UsageError} naming it. */
function envInt(env: (name: string) => string | undefined, name: string, min: number): number {
  const raw = env(name) ?? "";
  if (!/^[0-9]+$/.test(raw.trim()) || Number(raw) < min) {
    throw new UsageError(`${name} must be a whole number ≥ ${min}; got "${raw}"`);
  }
  return Number(raw);
}

/**
 * The shard of this process: `flag` (the `--shard` value) when given, else the batch engine's
 * environment variables, else null (a whole run).
 *
 * @param env reads an environment variable (undefined when unset).
 * @throws {UsageError} for a malformed value, an index outside the count, or a Kubernetes index
 *   without `DFKD_SHARD_COUNT`.
 */
export function chooseShard(
  flag: string | undefined,
  env: (name: string) => string | undefined,
): ShardChoice | null {
  if (flag !== undefined) return { ...parseShard(flag), source: "--shard" };
  if (env("JOB_COMPLETION_INDEX") !== undefined) {
    if (env("DFKD_SHARD_COUNT") === undefined) {
      throw new UsageError(
        "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but DFKD_SHARD_COUNT is not: " +
          "set DFKD_SHARD_COUNT to the Job's completions, or pass --shard i/n",
      );
    }
    const index = envInt(env, "JOB_COMPLETION_INDEX", 0);
    const count = envInt(env, "DFKD_SHARD_COUNT", 1);
    const s = parseShard(`${index}/${count}`, "JOB_COMPLETION_INDEX/DFKD_SHARD_COUNT");
    return { ...s, source: "JOB_COMPLETION_INDEX and DFKD_SHARD_COUNT" };
  }
  if (env("SLURM_ARRAY_TASK_ID") !== undefined) {
    const id = envInt(env, "SLURM_ARRAY_TASK_ID", 0);
    const count = envInt(env, "SLURM_ARRAY_TASK_COUNT", 1);
    const min = env("SLURM_ARRAY_TASK_MIN") === undefined
      ? 0
      : envInt(env, "SLURM_ARRAY_TASK_MIN", 0);
    const step = env("SLURM_ARRAY_TASK_STEP") === undefined
      ? 1
      : envInt(env, "SLURM_ARRAY_TASK_STEP", 1);
    if ((id - min) % step !== 0 || id < min) {
      throw new UsageError(
        `SLURM_ARRAY_TASK_ID ${id} is not in the array ${min}, ${min + step}, …; pass --shard i/n`,
      );
    }
    const s = parseShard(`${(id - min) / step}/${count}`, "the Slurm array task");
    return { ...s, source: "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT" };
  }
  return null;
}

/** Reads variable `name` of this process, or undefined (also without `--allow-env`). */
export function processEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
