/**
 * The output folder of a resumable run: where each piece of finished work is kept, and the only
 * code that reads or writes it.
 *
 * Layout (every file is written under a temporary name and renamed, so a file that exists is
 * complete; a kill leaves at most a `*.tmp` file, removed on the next start):
 * - `run.json`: the configuration, the teacher and the test set ({@link RunFile});
 * - `run.lock`: the process writing the folder, while it runs;
 * - `partial/`: finished synthesis batches (`synth-NNNNN.safetensors`), the synthesis time
 *   (`synthesis.json`) and the student with its optimiser state after its last finished epoch
 *   (`student.safetensors`);
 * - `transfer-set.safetensors`: `images [N,1,32,32]`, `soft_targets [N,10]`; its bytes depend only
 *   on the configuration, the teacher and the adapter (no timings);
 * - `samples.png`: one row per class (by soft-target argmax);
 * - `student.safetensors`: the distilled student;
 * - `losses.csv`: every logged loss (a resumed run appends);
 * - `metrics.json`: written last; its presence marks a finished run;
 * - `shard.json`: instead of the student and metrics, in the folder of a shard (a run that makes
 *   one slice of the transfer set and stops before distillation): written last, its presence
 *   marks a finished shard ({@link ShardFile}).
 *
 * @module
 */

import { RunFolderError } from "../errors.ts";
import { asWriteError, exists, writeFileAtomic } from "../io/atomic.ts";
import { imageGridPng } from "../io/png.ts";
import type { Sequential } from "../nn/layers.ts";
import { loadTrainingState, saveTrainingState, type TrainingState } from "../nn/checkpoint.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  saveSafetensors,
} from "../nn/safetensors.ts";
import { gridByClass } from "./diagnostics.ts";
import type { TransferBatch } from "./pipeline.ts";
import type { DfkdConfig } from "./settings.ts";

/** `dir/name` (no `node:path`: this module is also bundled for browsers). */
function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The contents of `run.json`. */
export interface RunFile {
  /** Every setting of the run. */
  config: DfkdConfig;
  /** Path of the teacher checkpoint (absolute when written by the CLI). */
  teacher: string;
  /** SHA-256 of the teacher file, checked on resume. */
  teacher_sha256?: string;
  /** The teacher's dataset. */
  dataset: string;
  /** Folder of the real test set the run was started with (absolute), or null for none. */
  data?: string | null;
  /** The synthesis batch size the run uses (`synthesis.batchSize` resolved), kept for resuming. */
  synthesis_batch_size?: number;
  /** For a shard: which slice of the transfer set it makes; absent for a whole run. */
  shard?: ShardFile;
}

/** Which slice of the transfer set a shard makes: images `first … first + images − 1`. */
export interface ShardFile {
  /** The shard's index, 0-based. */
  index: number;
  /** Shards in all. */
  count: number;
  /** Index of its first image. */
  first: number;
  /** Images it makes. */
  images: number;
}

/** Files and folders a run writes into its output folder (what starting over removes). */
export const RUN_ENTRIES: readonly string[] = [
  "metrics.json",
  "transfer-set.safetensors",
  "student.safetensors",
  "samples.png",
  "losses.csv",
  "run.json",
  "shard.json",
  "partial",
];

/** The lock file that marks a folder as being written by a running process. */
export const LOCK_FILE = "run.lock";

/** Whether `dir` holds a finished run (`metrics.json`) or a finished shard (`shard.json`). */
export async function isFinishedRun(dir: string): Promise<boolean> {
  return await exists(join(dir, "metrics.json")) || await isFinishedShard(dir);
}

/** Whether `dir` holds a finished shard (`shard.json`). */
export function isFinishedShard(dir: string): Promise<boolean> {
  return exists(join(dir, "shard.json"));
}

/** Whether `dir` holds a run, finished or not (`run.json`). */
export function hasRun(dir: string): Promise<boolean> {
  return exists(join(dir, "run.json"));
}

/**
 * Reads `run.json` of the run in `dir` (its settings are not validated here).
 *
 * @throws {RunFolderError} if there is none, it is unreadable, not JSON, or not a run file.
 */
export async function readRunFile(dir: string): Promise<RunFile> {
  const path = join(dir, "run.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new RunFolderError(`${dir} holds no run to resume (no run.json)`);
    }
    throw new RunFolderError(`${path} cannot be read (${(e as Error).message})`);
  }
  let run: RunFile;
  try {
    run = JSON.parse(text);
  } catch (e) {
    throw new RunFolderError(`${path} is not valid JSON (${(e as Error).message})`);
  }
  if (
    typeof run !== "object" || run === null || typeof run.config !== "object" ||
    run.config === null || Array.isArray(run.config) || typeof run.teacher !== "string"
  ) {
    throw new RunFolderError(`${path} is not a run description (no config or teacher)`);
  }
  return run;
}

/** Writes `run.json` into `dir` (atomically): the one writer of that file. */
export async function writeRunFile(dir: string, run: RunFile): Promise<void> {
  await writeFileAtomic(join(dir, "run.json"), JSON.stringify(run, null, 2) + "\n");
}

/**
 * Removes what a run wrote into `dir` ({@link RUN_ENTRIES} and leftover temporary files) and
 * nothing else, so that starting over in a folder that also holds other files keeps them.
 */
export async function clearRunFolder(dir: string): Promise<void> {
  for (const e of RUN_ENTRIES) {
    await Deno.remove(join(dir, e), { recursive: true }).catch(() => {});
  }
  await removeTempFiles(dir);
}

/** Removes `*.<pid>.<n>.tmp` files left in `dir` by an interrupted atomic write. */
async function removeTempFiles(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /\.\d+\.\d+\.tmp$/.test(e.name)) {
        await Deno.remove(join(dir, e.name)).catch(() => {});
      }
    }
  } catch { /* folder missing: nothing to clean */ }
}

/** SHA-256 of a file as hex. */
export async function fileSha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether process `pid` of this machine is alive (true when that cannot be told). */
function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return true; // no /proc: assume the owner lives
  }
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

/**
 * Takes the lock of the run folder `dir` (the file {@link LOCK_FILE} holding this process's id),
 * so that two processes never write one folder. A lock left by a process that no longer runs (a
 * `kill -9`, a power cut) is taken over.
 *
 * @returns a function that releases the lock (idempotent).
 * @throws {RunFolderError} when a live process holds the lock; the message names it.
 */
export async function lockRunFolder(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const host = hostname();
  const mine = JSON.stringify({ pid: Deno.pid, hostname: host, started: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await Deno.writeTextFile(path, mine + "\n", { createNew: true });
      let released = false;
      return async () => {
        if (!released) await Deno.remove(path).catch(() => {});
        released = true;
      };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw unwritable(e, dir);
    }
    let owner: { pid?: unknown; hostname?: unknown; started?: unknown } = {};
    try {
      owner = JSON.parse(await Deno.readTextFile(path));
    } catch { /* unreadable or half-written: treated as stale */ }
    const pid = typeof owner.pid === "number" ? owner.pid : NaN;
    const sameHost = owner.hostname === host;
    if (Number.isInteger(pid) && (!sameHost || processAlive(pid))) {
      const where = sameHost ? "" : ` on ${owner.hostname}`;
      throw new RunFolderError(
        `${dir} is being written by another run (process ${pid}${where}, started ` +
          `${owner.started}); wait for it to finish or stop it; if no run is writing there, ` +
          `delete ${path}`,
      );
    }
    await Deno.remove(path).catch(() => {}); // stale: its process is gone
  }
  throw new RunFolderError(`${path}: cannot take the lock of ${dir}; delete ${path} and retry`);
}

/** A failed write in `dir` as a {@link RunFolderError} when the folder is read-only. */
function unwritable(e: unknown, dir: string): unknown {
  const readOnly = e instanceof Deno.errors.PermissionDenied ||
    (e instanceof Error && /\(os error (13|30)\)/.test(e.message));
  if (!readOnly) return asWriteError(e, `${dir}/${LOCK_FILE}`);
  return new RunFolderError(
    `${dir} cannot be written (${(e as Error).message}); choose a writable output folder`,
  );
}

/** The image and soft-target shapes of a run, for checking what is read back. */
export interface Shapes {
  /** `[c, h, w]` of one image. */
  image: readonly number[];
  /** Classes of the teacher. */
  classes: number;
}

/** The work kept in one run folder: batches, the transfer set, the student's state, the log. */
export class RunFolder {
  private constructor(
    readonly dir: string,
    private readonly log: Deno.FsFile,
    private readonly logPath: string,
  ) {}

  /** Opens `dir` for a run: creates `partial/`, removes temporary files, opens `losses.csv`. */
  static async open(dir: string): Promise<RunFolder> {
    await Deno.mkdir(join(dir, "partial"), { recursive: true });
    await removeTempFiles(dir);
    await removeTempFiles(join(dir, "partial"));
    const logPath = join(dir, "losses.csv");
    const log = await Deno.open(logPath, { create: true, append: true });
    const folder = new RunFolder(dir, log, logPath);
    try {
      if ((await log.stat()).size === 0) folder.logLine("phase,batch,epoch,step,loss");
    } catch (e) {
      log.close();
      throw e;
    }
    return folder;
  }

  /** The `partial/` folder. */
  get partial(): string {
    return join(this.dir, "partial");
  }

  /** Appends one line to `losses.csv`. @throws {DiskFullError} when the disk is full. */
  logLine(s: string): void {
    const bytes = new TextEncoder().encode(s + "\n");
    try {
      for (let done = 0; done < bytes.length;) done += this.log.writeSync(bytes.subarray(done));
    } catch (e) {
      throw asWriteError(e, this.logPath);
    }
  }

  /** Closes `losses.csv`. */
  close(): void {
    this.log.close();
  }

  private batchFile(b: number): string {
    return join(this.partial, `synth-${String(b).padStart(5, "0")}.safetensors`);
  }

  /** Batch `b` of `n` images kept earlier, or null. @throws {RunFolderError} if it does not fit. */
  async storedBatch(b: number, n: number, shapes: Shapes) {
    const file = this.batchFile(b);
    if (!(await exists(file))) return null;
    const part = decodeSafetensors(await Deno.readFile(file), file);
    const per = shapes.image.reduce((a, c) => a * c, 1);
    const { images, soft_targets: targets } = part.tensors;
    if (images?.data.length !== n * per || targets?.data.length !== n * shapes.classes) {
      throw new RunFolderError(`${file} does not hold the ${n} images of batch ${b + 1}`);
    }
    return {
      images: images.data,
      targets: targets.data,
      loss: Number(part.metadata.loss),
      seconds: Number(part.metadata.seconds),
    };
  }

  /** Keeps batch `b`. */
  async saveBatch(b: number, res: TransferBatch, seconds: number, shapes: Shapes): Promise<void> {
    const n = res.targets.length / shapes.classes;
    await writeFileAtomic(
      this.batchFile(b),
      encodeSafetensors({
        images: { shape: [n, ...shapes.image], data: res.images },
        soft_targets: { shape: [n, shapes.classes], data: res.targets },
      }, { seconds: String(seconds), loss: String(res.loss) }),
    );
  }

  /** The finished transfer set (or shard's slice) of `n` images and its synthesis time, or null. */
  async transferSet(n: number, shapes: Shapes) {
    const path = join(this.dir, "transfer-set.safetensors");
    if (!(await exists(path))) return null;
    const ts = await loadSafetensors(path);
    const images = ts.tensors.images?.data;
    const targets = ts.tensors.soft_targets?.data;
    const per = shapes.image.reduce((a, c) => a * c, 1);
    if (images?.length !== n * per || targets?.length !== n * shapes.classes) {
      throw new RunFolderError(
        `${path} does not hold ${n} images and soft targets; delete it and resume the run to ` +
          `synthesise it anew`,
      );
    }
    let seconds = 0;
    try {
      seconds = Number(JSON.parse(await Deno.readTextFile(this.timePath)).seconds) || 0;
    } catch { /* time unknown */ }
    if (!(await exists(join(this.dir, "samples.png")))) {
      await this.writeSamples(images, targets, n, shapes);
    }
    return { images, targets, seconds, path };
  }

  private get timePath(): string {
    return join(this.partial, "synthesis.json");
  }

  /**
   * Keeps the finished transfer set (or a shard's slice of it): the time first, the picture next,
   * the transfer set last (its presence marks synthesis as finished; it holds no timing, so equal
   * settings give equal bytes); then the batches are removed. `extra` is added to its metadata.
   */
  async saveTransferSet(
    set: { images: Float32Array; targets: Float32Array; seconds: number; layer: string },
    cfg: DfkdConfig,
    shapes: Shapes,
    extra: Record<string, string> = {},
  ): Promise<void> {
    const n = set.targets.length / shapes.classes;
    await writeFileAtomic(this.timePath, JSON.stringify({ seconds: set.seconds }) + "\n");
    await this.writeSamples(set.images, set.targets, n, shapes);
    await saveSafetensors(join(this.dir, "transfer-set.safetensors"), {
      images: { shape: [n, ...shapes.image], data: set.images },
      soft_targets: { shape: [n, shapes.classes], data: set.targets },
    }, {
      method: cfg.synthesis.method,
      layer: set.layer,
      sigma: String(cfg.synthesis.sigma),
      tau: String(cfg.synthesis.tau),
      seed: String(cfg.seed),
      ...extra,
    });
    for await (const e of Deno.readDir(this.partial)) {
      if (/^synth-\d+\.safetensors$/.test(e.name)) {
        await Deno.remove(join(this.partial, e.name)).catch(() => {});
      }
    }
  }

  /** A grid with one row per class (by soft-target argmax), up to 10 images each. */
  private async writeSamples(
    images: Float32Array,
    targets: Float32Array,
    n: number,
    { image: [, h, w], classes }: Shapes,
  ): Promise<void> {
    const cols = 10;
    const { grid } = gridByClass(images, targets, n, classes, cols);
    await writeFileAtomic(
      join(this.dir, "samples.png"),
      await imageGridPng(grid, classes * cols, h, w, classes, cols, { pad: 2, scale: 2 }),
    );
  }

  private get studentPath(): string {
    return join(this.partial, "student.safetensors");
  }

  /** The student's weights and optimiser state after its last finished epoch, or null. */
  async studentState(student: Sequential) {
    if (!(await exists(this.studentPath))) return null;
    const st = await loadTrainingState(this.studentPath, student).catch((e) => {
      throw new RunFolderError(`${(e as Error).message} (delete it to restart distillation)`);
    });
    return { ...st, seconds: Number(st.metadata.seconds ?? 0) };
  }

  /** Keeps the student and its optimiser state after a finished epoch. */
  async saveStudentState(student: Sequential, state: TrainingState, seconds: number) {
    await saveTrainingState(this.studentPath, student, state, { seconds: String(seconds) });
  }

  /** Writes `shard.json` (the mark of a finished shard) and removes `partial/`. */
  async finishShard(shard: ShardFile & { seconds: number }): Promise<void> {
    await writeFileAtomic(join(this.dir, "shard.json"), JSON.stringify(shard, null, 2) + "\n");
    await Deno.remove(this.partial, { recursive: true }).catch(() => {});
  }

  /** Writes `metrics.json` (the mark of a finished run) and removes `partial/`. */
  async finish(metrics: unknown): Promise<void> {
    await writeFileAtomic(join(this.dir, "metrics.json"), JSON.stringify(metrics, null, 2) + "\n");
    await Deno.remove(this.partial, { recursive: true }).catch(() => {});
  }
}
