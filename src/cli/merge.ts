/**
 * `deno task merge DIR…`: assembles the finished shards of a sharded run (`deno task synth
 * --shard i/n`) into one transfer set, byte-identical to an unsharded run's, then distils the
 * student as that run would and writes the same outputs. The run's settings come from the shards'
 * run.json, which must agree (teacher SHA-256, dataset, every setting, shard count), and every
 * shard 0…n−1 must be given once and be finished.
 *
 * The output folder is an ordinary run folder: an interrupted merge continues with
 * `deno task synth --resume OUT`.
 *
 * @module
 */

import { join, resolve } from "node:path";
import {
  clearRunFolder,
  hasRun,
  isFinishedRun,
  lockRunFolder,
  runDfkd,
  type RunFile,
  storeTransferSet,
  writeRunFile,
} from "../dfkd/run.ts";
import { fileSha256 } from "../dfkd/run_folder.ts";
import {
  type ConfigOverrides,
  type DfkdConfig,
  resolveConfig,
  storedOverrides,
} from "../dfkd/settings.ts";
import { type MergedShards, mergeShards } from "../dfkd/shard.ts";
import { type DatasetName, parseDatasetName } from "../data/datasets.ts";
import { RunFolderError } from "../errors.ts";
import { type FlagSpec, helpText, type ParsedFlags, parseFlags, UsageError } from "./flags.ts";
import { initGpuForCli, runMain } from "./main.ts";
import {
  loadTeacher,
  openTestSet,
  printSummary,
  runWithSignals,
  warnTeacherAccuracy,
} from "./synth.ts";
import { asCliError } from "./synth_flags.ts";

/** The flags of `deno task merge`. */
export const MERGE_FLAGS: Record<string, FlagSpec> = {
  out: { type: "string", default: "runs/<date-time>", help: "Output folder of the merged run." },
  teacher: {
    type: "string",
    defaultText: "the shards' run.json",
    help: "The teacher checkpoint, when it is elsewhere on this machine than where the shards " +
      "ran; its SHA-256 must be the shards'.",
  },
  data: {
    type: "string",
    defaultText: "the shards' run.json, else the standard places",
    help: "Folder with the real test set's IDX files, for accuracy only.",
  },
  force: {
    type: "boolean",
    default: false,
    help: "Overwrite an output folder that holds a run.",
  },
};

function timestamp(): string {
  return new Date().toISOString().replace(/\..*$/, "").replace(/[-:]/g, "").replace("T", "-");
}

/**
 * The output folder, checked: not a shard's folder, and holding no run unless `--force`.
 *
 * @throws {UsageError} / {@link RunFolderError} naming the folder and what to do.
 */
async function checkOut(f: ParsedFlags, dirs: string[]): Promise<string> {
  const out = f.explicit.has("out") ? f.out as string : join("runs", timestamp());
  if (out.trim() === "") throw new UsageError("--out needs a path; got an empty string");
  if (dirs.some((d) => resolve(d) === resolve(out))) {
    throw new UsageError(`--out ${out} is one of the shards' folders; choose another --out`);
  }
  if (!f.force && await hasRun(out)) {
    const finished = await isFinishedRun(out);
    throw new RunFolderError(
      finished
        ? `--out ${out} already holds a finished run; pass --force to overwrite it or choose ` +
          `another --out`
        : `--out ${out} holds an unfinished run; continue it with deno task synth --resume ` +
          `${out}, or pass --force to merge anew`,
    );
  }
  return out;
}

/** The merged run's settings and dataset, checked against the schema. */
function mergedConfig(m: MergedShards): { cfg: DfkdConfig; dataset: DatasetName } {
  const dataset = parseDatasetName(String(m.run.dataset));
  if (dataset === null) {
    throw new RunFolderError(`the shards' run.json names an unknown dataset "${m.run.dataset}"`);
  }
  const overrides = storedOverrides(m.run.config as ConfigOverrides);
  return { cfg: resolveConfig({ dataset, overrides }), dataset };
}

/**
 * The teacher: `--teacher`, else the shards' path; its SHA-256 must be the shards'.
 *
 * @throws {UsageError} when it differs.
 */
async function openMergedTeacher(f: ParsedFlags, run: RunFile) {
  const path = f.explicit.has("teacher") ? f.teacher as string : run.teacher;
  const hint = "pass --teacher the checkpoint the shards were made with";
  const loaded = await loadTeacher(path, undefined, hint);
  const sha = await fileSha256(path);
  if (run.teacher_sha256 && sha !== run.teacher_sha256) {
    loaded.model.dispose();
    throw new UsageError(
      `the teacher ${path} is not the shards' (SHA-256 differs); ${hint}`,
    );
  }
  return { ...loaded, path, sha };
}

/** Runs `deno task merge` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const dirs: string[] = [];
  const f = parseFlags(args, MERGE_FLAGS, { positionals: dirs });
  if (f.help) {
    console.log(helpText(
      "Usage: deno task merge DIR… [flags]",
      "Assembles the finished shards in DIR… (deno task synth --shard i/n) into one transfer set,\n" +
        "the same bytes as an unsharded run's, then distils the student and writes the run's\n" +
        "outputs. The settings come from the shards' run.json.",
      MERGE_FLAGS,
    ));
    return 0;
  }
  if (dirs.length === 0) {
    throw new UsageError("name the shards' folders: deno task merge DIR… --out OUT");
  }
  const merged = await mergeShards(dirs);
  const { cfg, dataset } = mergedConfig(merged);
  const outDir = await checkOut(f, dirs);
  const gpu = await initGpuForCli();
  const t = await openMergedTeacher(f, merged.run);
  const test = await openTestSet(f, { run: merged.run, outDir }, dataset);
  await Deno.mkdir(outDir, { recursive: true }).catch((e) => {
    throw new UsageError(`--out ${outDir}: cannot create the folder (${e.message})`);
  });
  const unlock = await lockRunFolder(outDir);
  try {
    if (f.force) await clearRunFolder(outDir);
    const run = {
      config: cfg,
      teacher: resolve(t.path),
      teacher_sha256: t.sha,
      dataset,
      data: test.dir ? resolve(test.dir) : null,
    };
    // The transfer set first: a folder with run.json and no transfer set would resume by
    // synthesising it all anew.
    await storeTransferSet(outDir, t.model, cfg, merged);
    await writeRunFile(outDir, run);
    console.error(`merged ${dirs.length} shards into ${outDir}; distilling`);
    const ctx = {
      teacher: t.model,
      teacherName: t.path,
      dataset,
      testSet: test.testSet,
      testSetDir: test.dir,
      adapter: gpu.description,
    };
    const outcome = await runWithSignals((hooks) => runDfkd(cfg, outDir, hooks), ctx);
    if (outcome.stopped) {
      console.error(`interrupted: continue with deno task synth --resume ${outDir}`);
      return outcome.signal === "SIGTERM" ? 143 : 130;
    }
    warnTeacherAccuracy(outcome.metrics, t.metadata, dataset, test.dir);
    printSummary(outcome.metrics, cfg, t.model, outDir);
    return 0;
  } finally {
    await unlock();
  }
}

if (import.meta.main) runMain(main, asCliError);
