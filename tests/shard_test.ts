/**
 * Sharded synthesis through the real CLI processes at toy size: three shards (`--shard 0/3` …
 * `2/3`, one of them chosen by Kubernetes' and one by Slurm's environment variables, one
 * interrupted and resumed) merged by `deno task merge` give the transfer set and the student of
 * one unsharded run, byte for byte; merge refuses missing, duplicate, mismatched and unfinished
 * shards with exit 2 and writes nothing; the choice of shard from the environment.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { chooseShard } from "../src/cli/shard_env.ts";
import { checkShards, type ShardContents, shardSlice } from "../src/dfkd/shard.ts";
import { DEFAULTS } from "../src/dfkd/settings.ts";
import { saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import { exists } from "../src/io/atomic.ts";
import { assertUserError, cli, inBatches } from "./cli_helpers.ts";
import { gpuReady } from "./helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "dfkd-shard-" });
const teacher = join(tmp, "teacher.safetensors");
const dir = (name: string) => join(tmp, name);
/** 30 images of 4 iterations with jitter and flips, 2 KD epochs. */
const RUN = [
  "--teacher",
  teacher,
  "--samples",
  "30",
  "--iterations",
  "4",
  "--synth-jitter",
  "2",
  "--synth-flip",
  "on",
  "--student-epochs",
  "2",
  "--student-batch-size",
  "8",
  "--seed",
  "3",
];
const bytes = (d: string, file = "transfer-set.safetensors") => Deno.readFile(join(d, file));
const ok = (r: { code: number; stderr: string }) => assert.equal(r.code, 0, r.stderr);

Deno.test("shardSlice: contiguous slices covering every image once; bad shards refused", () => {
  const slices = [0, 1, 2].map((index) => shardSlice({ index, count: 3 }, 10));
  assert.deepEqual(slices.map((s) => [s.first, s.images]), [[0, 3], [3, 3], [6, 4]]);
  assert.throws(() => shardSlice({ index: 3, count: 3 }, 10), /0…2/);
  assert.throws(() => shardSlice({ index: 0, count: 11 }, 10), /at most 10 shards/);
});

Deno.test("checkShards reads a setting that a shard's run.json predates as the shard ran it", () => {
  /** Shard `index` of 2 over 4 images; `initMax` undefined: a run.json from before the setting. */
  const shard = (index: number, initMax?: number) => {
    const config = structuredClone(DEFAULTS) as unknown as { synthesis: Record<string, unknown> };
    config.synthesis.samples = 4;
    if (initMax === undefined) delete config.synthesis.initMax;
    else config.synthesis.initMax = initMax;
    const { first, images } = shardSlice({ index, count: 2 }, 4);
    const tensor = (k: number) => ({ shape: [images, k], data: new Float32Array(images * k) });
    const run = { config, teacher: "t", dataset: "mnist", teacher_sha256: "ab" };
    return {
      dir: `shard-${index}`,
      run: { ...run, shard: { index, count: 2, first, images } },
      slice: { tensors: { images: tensor(16), soft_targets: tensor(10) } },
      seconds: 0,
    } as unknown as ShardContents;
  };
  checkShards([shard(0), shard(1, 1)]);
  assert.throws(() => checkShards([shard(0), shard(1, 0.1)]), /settings/);
  assert.throws(() => checkShards([shard(0, 0.5), shard(1, 1)]), /settings/);
});

Deno.test("the shard comes from --shard, else Kubernetes' or Slurm's variables", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(chooseShard(undefined, env({})), null);
  assert.deepEqual(chooseShard("2/5", env({ JOB_COMPLETION_INDEX: "1" })), {
    index: 2,
    count: 5,
    source: "--shard",
  });
  const k8s = chooseShard(undefined, env({ JOB_COMPLETION_INDEX: "3", DFKD_SHARD_COUNT: "4" }));
  assert.deepEqual([k8s?.index, k8s?.count], [3, 4]);
  assert.throws(
    () => chooseShard(undefined, env({ JOB_COMPLETION_INDEX: "3" })),
    /DFKD_SHARD_COUNT/,
  );
  // --array=1-8: ids 1…8 are shards 0…7; --array=0-10:5: ids 0, 5, 10 are shards 0…2.
  const slurm = (vars: Record<string, string>) => chooseShard(undefined, env(vars));
  const one = slurm({
    SLURM_ARRAY_TASK_ID: "8",
    SLURM_ARRAY_TASK_COUNT: "8",
    SLURM_ARRAY_TASK_MIN: "1",
  });
  assert.deepEqual([one?.index, one?.count], [7, 8]);
  const stepped = slurm({
    SLURM_ARRAY_TASK_ID: "10",
    SLURM_ARRAY_TASK_COUNT: "3",
    SLURM_ARRAY_TASK_MIN: "0",
    SLURM_ARRAY_TASK_STEP: "5",
  });
  assert.deepEqual([stepped?.index, stepped?.count], [2, 3]);
  assert.throws(() => slurm({ SLURM_ARRAY_TASK_ID: "8", SLURM_ARRAY_TASK_COUNT: "8" }), /0…n−1/);
  for (const bad of ["3", "1/0", "a/b", "-1/2", "2/2"]) {
    assert.throws(() => chooseShard(bad, env({})));
  }
});

Deno.test("three shards merged are byte-identical to one unsharded run", async () => {
  await gpuReady;
  const m = buildModel("lenet5", 6);
  await saveModel(teacher, m, { dataset: "fashion-mnist" });
  m.dispose();
  // Shard 0 by flag, 1 by Kubernetes' variables, 2 by Slurm's (an array 1-3), beside the whole run.
  const results = await inBatches([
    () => cli("synth", [...RUN, "--out", dir("whole")]),
    () => cli("synth", [...RUN, "--shard", "0/3", "--out", dir("s0"), "--batch-size", "4"]),
    () =>
      cli("synth", [...RUN, "--out", dir("s1")], {
        JOB_COMPLETION_INDEX: "1",
        DFKD_SHARD_COUNT: "3",
      }),
    () =>
      cli("synth", [...RUN, "--out", dir("s2")], {
        SLURM_ARRAY_TASK_ID: "3",
        SLURM_ARRAY_TASK_COUNT: "3",
        SLURM_ARRAY_TASK_MIN: "1",
      }),
  ], 2);
  results.forEach(ok);
  for (const [i, d] of ["s0", "s1", "s2"].entries()) {
    assert.match(results[i + 1].stderr, new RegExp(`shard ${i}/3 \\(from `));
    assert.ok(await exists(join(dir(d), "shard.json")), d);
    assert.ok(!(await exists(join(dir(d), "student.safetensors"))), `${d}: no distillation`);
    const run = JSON.parse(await Deno.readTextFile(join(dir(d), "run.json")));
    assert.deepEqual(run.shard, { index: i, count: 3, first: i * 10, images: 10 });
    assert.equal(run.config.synthesis.batchSize, i === 0 ? 4 : "auto");
    assert.equal(run.synthesis_batch_size, i === 0 ? 4 : 10);
  }
  const merged = await cli("merge", [dir("s2"), dir("s0"), dir("s1"), "--out", dir("merged")]);
  ok(merged);
  assert.deepEqual(await bytes(dir("merged")), await bytes(dir("whole")), "transfer sets differ");
  assert.deepEqual(
    await bytes(dir("merged"), "student.safetensors"),
    await bytes(dir("whole"), "student.safetensors"),
    "students differ",
  );
  for (const f of ["metrics.json", "samples.png", "losses.csv", "run.json"]) {
    assert.ok(await exists(join(dir("merged"), f)), f);
  }
});

Deno.test("a shard interrupted mid-synthesis resumes like a run, to the same slice", async () => {
  const args = [...RUN, "--shard", "1/3", "--batch-size", "2", "--out", dir("r1")];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../src/cli/synth.ts", import.meta.url).pathname, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const batch = join(dir("r1"), "partial", "synth-00000.safetensors");
  const t0 = Date.now();
  while (!(await exists(batch)) && Date.now() - t0 < 60_000) {
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGINT");
  const status = await child.status;
  assert.equal(status.code, 130, "the first batch did not appear before the run ended");
  assertUserError(await cli("synth", ["--resume", dir("r1"), "--shard", "0/3"]), "shard 1/3");
  ok(await cli("synth", ["--resume", dir("r1")]));
  assert.deepEqual(await bytes(dir("r1")), await bytes(dir("s1")), "resumed shard differs");
  assertUserError(await cli("synth", ["--resume", dir("r1")]), "finished");
});

Deno.test("merge refuses missing, duplicate, mismatched and unfinished shards (exit 2)", async () => {
  const bad = dir("bad-out");
  const refused = async (args: string[], ...needles: string[]) => {
    assertUserError(await cli("merge", [...args, "--out", bad]), ...needles);
    assert.ok(!(await exists(bad)), "merge wrote its output folder");
  };
  // Another seed: a shard of another run.
  ok(await cli("synth", [...RUN, "--seed", "4", "--shard", "2/3", "--out", dir("other")]));
  // An unfinished shard: run.json written, stopped before its first batch (a bad teacher later).
  await Deno.mkdir(dir("unfinished"), { recursive: true });
  const run = JSON.parse(await Deno.readTextFile(join(dir("s2"), "run.json")));
  await Deno.writeTextFile(join(dir("unfinished"), "run.json"), JSON.stringify(run));
  await inBatches([
    () => refused([dir("s0"), dir("s1")], "shard 2/3", "missing"),
    () => refused([dir("s0"), dir("s1"), dir("s1"), dir("s2")], "shard 1/3 is given twice"),
    () => refused([dir("s0"), dir("s1"), dir("other")], "differ in their settings"),
    () => refused([dir("s0"), dir("s1"), dir("unfinished")], "not finished"),
    () => refused([dir("s0"), dir("s1"), dir("whole")], "not a shard"),
    () => refused([dir("s0"), dir("s1"), dir("nowhere")], "no run"),
    () => refused([], "name the shards' folders"),
  ], 2);
  const copy = join(tmp, "other-teacher.safetensors");
  const m = buildModel("lenet5", 7);
  await saveModel(copy, m, { dataset: "fashion-mnist" });
  m.dispose();
  await refused([dir("s0"), dir("s1"), dir("s2"), "--teacher", copy], "SHA-256");
  const again = await cli("merge", [dir("s0"), dir("s1"), dir("s2"), "--out", dir("merged")]);
  assertUserError(again, "already holds a finished run");
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
