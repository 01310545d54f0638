/**
 * Sharded synthesis: shard `i` of `n` makes one contiguous slice of the transfer set, in its own
 * run folder; the finished shards are then checked to belong together and assembled into the
 * transfer set an unsharded run makes, byte for byte (synthesis is batch invariant and image `i`
 * draws from its own generator, so a slice's images are the same images of the whole set).
 *
 * @module
 */

import { RunFolderError, SettingError } from "../errors.ts";
import { type ConfigOverrides, getSetting, SETTINGS, storedOverrides } from "./settings.ts";
import { exists } from "../io/atomic.ts";
import { loadSafetensors, type SafetensorsContents } from "../nn/safetensors.ts";
import { readRunFile, type RunFile, type ShardFile } from "./run_folder.ts";

/** Shard `index` of `count` (0 ≤ index < count). */
export interface Shard {
  /** 0-based. */
  index: number;
  /** Shards in all, ≥ 1. */
  count: number;
}

/**
 * The slice of a transfer set of `samples` images that shard `index` of `count` makes:
 * images `⌊index·samples/count⌋ … ⌊(index+1)·samples/count⌋ − 1` (contiguous, sizes differing by
 * at most one, every image in exactly one shard).
 *
 * @throws {SettingError} (key `shard`) when the shard is malformed or there are more shards than
 *   images.
 */
export function shardSlice(shard: Shard, samples: number): ShardFile {
  const { index, count } = shard;
  if (!(Number.isSafeInteger(count) && count >= 1 && Number.isSafeInteger(index))) {
    throw new SettingError("shard", `shard must be whole numbers; got ${index}/${count}`);
  }
  if (index < 0 || index >= count) {
    throw new SettingError("shard", `shard index ${index} must be in 0…${count - 1}`);
  }
  if (count > samples) {
    throw new SettingError(
      "shard",
      `${count} shards for ${samples} images: every shard needs at least one image; use at ` +
        `most ${samples} shards`,
    );
  }
  const first = Math.floor((index * samples) / count);
  const end = Math.floor(((index + 1) * samples) / count);
  return { index, count, first, images: end - first };
}

/** One finished shard read back: its run file and its slice of the transfer set. */
export interface ShardContents {
  /** Its folder. */
  dir: string;
  /** Its run.json (with `shard`). */
  run: RunFile & { shard: ShardFile };
  /** Its `transfer-set.safetensors`: images and soft targets of its slice. */
  slice: SafetensorsContents;
  /** Seconds its synthesis took (from `shard.json`). */
  seconds: number;
}

/** The assembled transfer set of a set of shards, with the run file they share. */
export interface MergedShards {
  /** The shards' run file without `shard` (the unsharded run's). */
  run: RunFile;
  /** Images `[N, ...image]`. */
  images: Float32Array;
  /** Soft targets `[N, classes]`. */
  targets: Float32Array;
  /** Sum of the shards' synthesis seconds. */
  seconds: number;
  /** The modelled layer (transfer-set metadata), or `"none"`. */
  layer: string;
}

/**
 * Reads the shard in `dir`.
 *
 * @throws {RunFolderError} when `dir` holds no run, a run that is not a shard, or an unfinished
 *   shard.
 */
export async function readShard(dir: string): Promise<ShardContents> {
  const run = await readRunFile(dir);
  const s = run.shard;
  if (!s || typeof s !== "object" || !Number.isInteger(s.index) || !Number.isInteger(s.count)) {
    throw new RunFolderError(`${dir} holds a whole run, not a shard (its run.json has no shard)`);
  }
  const done = `${dir}/shard.json`;
  const path = `${dir}/transfer-set.safetensors`;
  if (!(await exists(done)) || !(await exists(path))) {
    throw new RunFolderError(
      `shard ${s.index}/${s.count} in ${dir} is not finished; resume that shard's run, then ` +
        `merge again`,
    );
  }
  let seconds = 0;
  try {
    seconds = Number(JSON.parse(await Deno.readTextFile(done)).seconds) || 0;
  } catch { /* time unknown */ }
  return { dir, run: run as ShardContents["run"], slice: await loadSafetensors(path), seconds };
}

/**
 * The settings of a run that decide its result, in the schema's order: all but
 * `synthesis.batchSize` (a speed), keys the run file predates read as the run ran them.
 */
function resultSettings(run: RunFile): string {
  const stored = storedOverrides(run.config as ConfigOverrides);
  const keys = SETTINGS.filter((s) => s.key !== "synthesis.batchSize").map((s) => s.key);
  return JSON.stringify(keys.map((k) => getSetting(stored, k) ?? null));
}

/**
 * Checks that `shards` belong together: one teacher (SHA-256), one dataset, equal settings (the
 * synthesis batch size may differ: it changes the speed only), one shard count, every index once,
 * each slice where {@link shardSlice} puts it and of its size.
 *
 * @throws {RunFolderError} naming the shard and what differs or is missing.
 */
export function checkShards(shards: readonly ShardContents[]): void {
  if (shards.length === 0) throw new RunFolderError("no shards to merge");
  const [a] = shards;
  const config = resultSettings(a.run);
  for (const b of shards.slice(1)) {
    const differ = (what: string) =>
      new RunFolderError(
        `the shards in ${a.dir} and ${b.dir} differ in ${what}; they are not ` +
          `parts of one run`,
      );
    if (b.run.teacher_sha256 !== a.run.teacher_sha256) throw differ("their teacher (SHA-256)");
    if (b.run.dataset !== a.run.dataset) throw differ("their dataset");
    if (resultSettings(b.run) !== config) throw differ("their settings (run.json)");
    if (b.run.shard.count !== a.run.shard.count) throw differ("their shard count");
  }
  const count = a.run.shard.count;
  const seen = new Map<number, string>();
  for (const s of shards) {
    const i = s.run.shard.index;
    const other = seen.get(i);
    if (other !== undefined) {
      throw new RunFolderError(`shard ${i}/${count} is given twice: ${other} and ${s.dir}`);
    }
    seen.set(i, s.dir);
    checkSlice(s, a.run.config.synthesis.samples);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0) {
    throw new RunFolderError(
      `shard${missing.length > 1 ? "s" : ""} ${missing.map((i) => `${i}/${count}`).join(", ")} ` +
        `of the ${count} ${missing.length > 1 ? "are" : "is"} missing`,
    );
  }
}

/** @throws {RunFolderError} when a shard's slice is not the one its index names. */
function checkSlice(s: ShardContents, samples: number): void {
  const want = shardSlice(s.run.shard, samples);
  const images = s.slice.tensors.images;
  const targets = s.slice.tensors.soft_targets;
  if (
    s.run.shard.first !== want.first || s.run.shard.images !== want.images ||
    images?.shape[0] !== want.images || targets?.shape[0] !== want.images
  ) {
    throw new RunFolderError(
      `${s.dir}/transfer-set.safetensors does not hold images ${want.first}…` +
        `${want.first + want.images - 1} of shard ${want.index}/${want.count}`,
    );
  }
}

/**
 * Reads the shards in `dirs`, checks them ({@link checkShards}) and assembles their slices in
 * index order into one transfer set.
 *
 * @throws {RunFolderError} when a folder is not a finished shard or the shards do not belong
 *   together.
 */
export async function mergeShards(dirs: readonly string[]): Promise<MergedShards> {
  const shards: ShardContents[] = [];
  for (const dir of dirs) shards.push(await readShard(dir));
  checkShards(shards);
  shards.sort((x, y) => x.run.shard.index - y.run.shard.index);
  const n = shards[0].run.config.synthesis.samples;
  const img = shards[0].slice.tensors.images;
  const per = img.data.length / img.shape[0];
  const classes = shards[0].slice.tensors.soft_targets.shape[1];
  const images = new Float32Array(n * per);
  const targets = new Float32Array(n * classes);
  for (const s of shards) {
    images.set(s.slice.tensors.images.data, s.run.shard.first * per);
    targets.set(s.slice.tensors.soft_targets.data, s.run.shard.first * classes);
  }
  const { shard: _, synthesis_batch_size: _b, ...run } = shards[0].run;
  return {
    run,
    images,
    targets,
    seconds: shards.reduce((t, s) => t + s.seconds, 0),
    layer: shards[0].slice.metadata.layer ?? "none",
  };
}
