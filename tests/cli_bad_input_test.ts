/**
 * Bad input to the command-line tools, table-driven, each through the real CLI process: every
 * case must end in exit code 2 with one `error: ` line that names the problem (no exit 1, no stack
 * trace), and must leave no output that looks finished. Also the inputs `deno task eval` accepts:
 * PyTorch state dicts with `--arch`, and the usual spellings of dataset names.
 *
 * Kinds of bad input covered here. Those `cli_errors_test.ts` tests on synth are not repeated,
 * except 30, 31, 45 and 47, which are tested here on eval.
 *
 * Flags (malformed numbers, ranges, choices, missing values, unknown flags, positionals):
 *  1. hexadecimal integer (`--samples 0x14`)
 *  2. octal-prefixed integer (`--seed 0o7`)
 *  3. binary-prefixed integer (`--batch-size 0b101`)
 *  4. exponent notation for an integer flag (`--samples 1e3`)
 *  5. hexadecimal for a number flag (`--tau 0x14`)
 *  6. `-Infinity` for a number flag (`--kd-tau`)
 *  7. whitespace-only value (`--sigma " "`)
 *  8. empty inline value (`--tau=`)
 *  9. integer beyond 2^53 (`--seed 99999999999999999999`)
 * 10. decimal comma (`--synth-lr 0,01`)
 * 11. integer above its maximum (`--synth-jitter 17`)
 * 12. number above its maximum (`--kd-adv-fraction 1.5`)
 * 13. size above its maximum (`--samples 2000000`)
 * 14. negative weight (`--lambda-act -0.1`)
 * 15. zero where > 0 is required (`--kd-tau 0`)
 * 65. initial noise outside (0, 1], the pixel range (`--synth-init 1.5`, `--synth-init 0`)
 * 16. zero epochs (train-teacher `--epochs 0`)
 * 17. batch above its maximum (train-teacher `--batch-size 70000`)
 * 18. unknown architecture choice (eval `--arch resnet`)
 * 19. unknown dataset name (eval `--dataset cifar10`), with the known ones listed
 * 20. unknown student choice (synth `--student vgg`)
 * 21. on/off flag given another word (`--kd-shift maybe`)
 * 22. unknown schedule (train-teacher `--schedule linear`)
 * 23. value missing at the end (eval `--data`)
 * 24. misspelt flag (eval `--modle`)
 * 25. unknown flag of train-teacher (`--lr-rate`)
 * 26. a positional argument (eval `model.safetensors` without `--model`)
 * 27. a value given to a boolean flag (`--force=yes`)
 * 28. single-dash flag (`-samples 5`)
 *
 * Checkpoints given to eval (`--model`):
 * 29. a folder instead of a file
 * 30. a missing file
 * 31. an empty file
 * 32. a Python pickle
 * 33. a ZIP archive (PyTorch .pt)
 * 34. an HDF5 file (Keras .h5)
 * 35. a gzip-compressed file
 * 36. a tensor of dtype F16
 * 37. a header that is not JSON
 * 38. a header that is not a JSON object (an array)
 * 39. data offsets out of range of the data buffer
 * 40. overlapping tensors
 * 41. bytes after the last tensor
 * 42. a hole between tensors
 * 43. the same tensor name twice in the header
 * 44. a truncated file (header length past the end)
 * 45. shapes of another architecture (`--arch lenet5-half` on a LeNet-5)
 * 46. a missing tensor (`fc3.bias` dropped)
 * 47. a NaN weight
 * 48. an infinite weight
 * 49. an unknown architecture in the metadata
 * 50. an unknown dataset in the metadata
 * 51. no architecture in the metadata, no `--arch`, and shapes that fit no architecture
 * 52. tensor names that fit no mapping (the expected names are listed)
 * 53. a student inside an unfinished run's `partial/` folder
 *
 * Data folders given to eval (`--data`):
 * 54. a folder that does not exist
 * 55. a file instead of a folder
 * 56. a valid test set of 0 images (also refused by synth)
 * 57. a label outside 0..9
 * 58. images that are not 28×28
 * 59. a label file where the images belong
 * 60. a truncated gzip file
 *
 * Teachers given to synth:
 * 61. all-zero weights (refused before synthesis, with no hint about sigma)
 * 64. a low-resolution factor that does not divide the teacher's input (`--synth-lowres 3`)
 *
 * No data anywhere (no `--data`, nothing in the standard places):
 * 62. MNIST (no Debian package to suggest), for eval and train-teacher
 * 63. Fashion-MNIST (the Debian package is suggested), for eval and train-teacher
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { gzip } from "node:zlib";
import { promisify } from "node:util";
import { saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import {
  encodeSafetensors,
  type HostTensor,
  loadSafetensors,
  saveSafetensors,
} from "../src/nn/safetensors.ts";
import { exists } from "../src/io/atomic.ts";
import { gpuReady } from "./helpers.ts";
import { assertUserError, cli, type CliResult, dataFolder, idx, inBatches } from "./cli_helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "dfkd-cli-bad-input-" });
const teacher = join(tmp, "teacher.safetensors");
const data = join(tmp, "data");
let counter = 0;
const fresh = (name: string) => join(tmp, `${counter++}-${name}`);

/** One bad input: the command, and the fragments its error line must hold. */
interface Case {
  kind: string;
  tool: "eval" | "synth" | "train_teacher";
  args: string[];
  needles: string[];
}

/**
 * Runs each case (four processes at a time) and asserts a one-line user error; synth and
 * train-teacher get a fresh `--out` that must stay absent.
 */
async function refuseAll(cases: Case[]): Promise<void> {
  const results = await inBatches(cases.map((c) => async () => {
    const out = fresh("out");
    const extra = c.tool === "eval" ? [] : ["--out", c.tool === "synth" ? out : `${out}.st`];
    const r = await cli(c.tool, [...c.args, ...extra]);
    const left = c.tool === "eval" ? false : await exists(c.tool === "synth" ? out : `${out}.st`);
    return { c, r, left };
  }));
  for (const { c, r, left } of results) {
    assert.equal(left, false, `${c.kind}: an output was written`);
    try {
      assertUserError(r, ...c.needles);
    } catch (e) {
      throw new Error(`${c.kind} (${c.tool} ${c.args.join(" ")}): ${(e as Error).message}`);
    }
  }
}

/** A file laid out as the safetensors format says: u64 header length, header, data. */
function rawSafetensors(header: string, dataBytes: number): Uint8Array {
  const h = new TextEncoder().encode(header.padEnd(Math.ceil(header.length / 8) * 8, " "));
  const out = new Uint8Array(8 + h.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

/** Writes `bytes` to a fresh file named `name` and returns its path. */
async function file(name: string, bytes: Uint8Array): Promise<string> {
  const p = fresh(name);
  await Deno.writeFile(p, bytes);
  return p;
}

/** Writes `tensors` and `metadata` to a fresh safetensors file and returns its path. */
async function checkpoint(
  name: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<string> {
  const p = fresh(name);
  await saveSafetensors(p, tensors, metadata);
  return p;
}

/** The teacher's tensors, each renamed by `rename` (null drops it). */
async function renamed(rename: (k: string) => string | null): Promise<Record<string, HostTensor>> {
  const { tensors } = await loadSafetensors(teacher);
  const out: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(tensors)) {
    const n = rename(k);
    if (n !== null) out[n] = t;
  }
  return out;
}

/** The accuracy line of a successful eval. */
function accuracy(r: CliResult): string {
  assert.equal(r.code, 0, r.stderr);
  const m = r.stdout.match(/: (\S+) on (\S+) test set \(5 images\): ([\d.]+%)/);
  assert.ok(m, r.stdout);
  return `${m[1]} ${m[2]} ${m[3]}`;
}

Deno.test({
  name: "setup: a LeNet-5 teacher and a tiny data folder",
  fn: async () => {
    await gpuReady;
    const m = buildModel("lenet5", 11);
    await saveModel(teacher, m, { dataset: "fashion-mnist" });
    m.dispose();
    await dataFolder(data);
  },
});

Deno.test("bad flags: malformed numbers, ranges, choices, missing values, unknown flags", async () => {
  const t = ["--teacher", teacher];
  const m = ["--model", teacher, "--data", data];
  const cases: Case[] = [
    { kind: "1", tool: "synth", args: [...t, "--samples", "0x14"], needles: ["--samples", "0x14"] },
    { kind: "2", tool: "synth", args: [...t, "--seed", "0o7"], needles: ["--seed", "decimal"] },
    { kind: "3", tool: "synth", args: [...t, "--batch-size", "0b101"], needles: ["--batch-size"] },
    { kind: "4", tool: "synth", args: [...t, "--samples", "1e3"], needles: ["--samples", "1e3"] },
    { kind: "5", tool: "synth", args: [...t, "--tau", "0x14"], needles: ["--tau", "decimal"] },
    { kind: "6", tool: "synth", args: [...t, "--kd-tau", "-Infinity"], needles: ["--kd-tau"] },
    { kind: "7", tool: "synth", args: [...t, "--sigma", " "], needles: ["--sigma needs a value"] },
    { kind: "8", tool: "synth", args: [...t, "--tau="], needles: ["--tau needs a value"] },
    {
      kind: "9",
      tool: "synth",
      args: [...t, "--seed", "99999999999999999999"],
      needles: ["--seed"],
    },
    { kind: "10", tool: "synth", args: [...t, "--synth-lr", "0,01"], needles: ["--synth-lr"] },
    { kind: "11", tool: "synth", args: [...t, "--synth-jitter", "17"], needles: ["≤ 16"] },
    { kind: "12", tool: "synth", args: [...t, "--kd-adv-fraction", "1.5"], needles: ["≤ 1"] },
    { kind: "13", tool: "synth", args: [...t, "--samples", "2000000"], needles: ["≤ 1000000"] },
    { kind: "14", tool: "synth", args: [...t, "--lambda-act", "-0.1"], needles: ["≥ 0"] },
    {
      kind: "64",
      tool: "synth",
      args: [...t, "--synth-lowres", "3"],
      needles: ["--synth-lowres 3", "32 × 32"],
    },
    {
      kind: "65",
      tool: "synth",
      args: [...t, "--synth-init", "1.5"],
      needles: ["--synth-init", "≤ 1", "1.5"],
    },
    {
      kind: "65",
      tool: "synth",
      args: [...t, "--synth-init", "0"],
      needles: ["--synth-init", "> 0"],
    },
    { kind: "15", tool: "synth", args: [...t, "--kd-tau", "0"], needles: ["--kd-tau", "> 0"] },
    {
      kind: "16",
      tool: "train_teacher",
      args: ["--data", data, "--epochs", "0"],
      needles: ["--epochs", "≥ 1"],
    },
    {
      kind: "17",
      tool: "train_teacher",
      args: ["--data", data, "--batch-size", "70000"],
      needles: ["--batch-size", "≤ 65536"],
    },
    {
      kind: "18",
      tool: "eval",
      args: [...m, "--arch", "resnet"],
      needles: ["--arch", "lenet5, lenet5-half"],
    },
    {
      kind: "19",
      tool: "eval",
      args: [...m, "--dataset", "cifar10"],
      needles: ["--dataset cifar10", "fashion-mnist, mnist"],
    },
    { kind: "20", tool: "synth", args: [...t, "--student", "vgg"], needles: ["--student"] },
    { kind: "21", tool: "synth", args: [...t, "--kd-shift", "maybe"], needles: ["on, off"] },
    {
      kind: "22",
      tool: "train_teacher",
      args: ["--data", data, "--schedule", "linear"],
      needles: ["--schedule", "cosine"],
    },
    { kind: "23", tool: "eval", args: ["--model", teacher, "--data"], needles: ["--data needs"] },
    { kind: "24", tool: "eval", args: ["--modle", teacher], needles: ["--modle", "--help"] },
    { kind: "25", tool: "train_teacher", args: ["--lr-rate", "1"], needles: ["--lr-rate"] },
    { kind: "26", tool: "eval", args: [teacher], needles: ["positional", "--help"] },
    { kind: "27", tool: "synth", args: [...t, "--force=yes"], needles: ["--force"] },
    { kind: "28", tool: "synth", args: [...t, "-samples", "5"], needles: ["-s"] },
  ];
  await refuseAll(cases);
});

Deno.test("eval: bad checkpoint files name the file and the problem", async () => {
  await gpuReady;
  const good = await loadSafetensors(teacher);
  const withValue = async (v: number) => {
    const { tensors, metadata } = await loadSafetensors(teacher);
    tensors["fc1.weight"].data[3] = v;
    return await checkpoint("bad-value.safetensors", tensors, metadata);
  };
  const bytes = encodeSafetensors(good.tensors, good.metadata);
  const a = '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  const folder = fresh("folder.safetensors");
  await Deno.mkdir(folder);
  const run = fresh("run");
  await Deno.mkdir(join(run, "partial"), { recursive: true });
  await Deno.writeTextFile(join(run, "run.json"), "{}");
  const partial = join(run, "partial", "student.safetensors");
  await Deno.copyFile(teacher, partial);
  const gz = new Uint8Array(await promisify(gzip)(bytes));
  const eval_ = (path: string, ...more: string[]) => ["--model", path, "--data", data, ...more];
  const cases: Case[] = [
    { kind: "29", tool: "eval", args: eval_(folder), needles: [folder, "is a folder"] },
    { kind: "30", tool: "eval", args: eval_(fresh("gone")), needles: ["gone", "not found"] },
    {
      kind: "31",
      tool: "eval",
      args: eval_(await file("empty.safetensors", new Uint8Array())),
      needles: ["empty"],
    },
    {
      kind: "32",
      tool: "eval",
      args: eval_(await file("model.pkl", Uint8Array.of(0x80, 2, 0x7d, 0x71, 0, 0x28, 0, 0, 0x2e))),
      needles: ["pickle"],
    },
    {
      kind: "33",
      tool: "eval",
      args: eval_(await file("model.pt", Uint8Array.of(0x50, 0x4b, 3, 4, 20, 0, 0, 0, 0, 0, 0))),
      needles: ["ZIP", "PyTorch"],
    },
    {
      kind: "34",
      tool: "eval",
      args: eval_(await file("model.h5", Uint8Array.of(0x89, 0x48, 0x44, 0x46, 13, 10, 26, 10))),
      needles: ["HDF5"],
    },
    {
      kind: "35",
      tool: "eval",
      args: eval_(await file("model.safetensors.gz", gz)),
      needles: ["gzip", "decompress"],
    },
    {
      kind: "36",
      tool: "eval",
      args: eval_(
        await file(
          "f16.safetensors",
          rawSafetensors('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', 4),
        ),
      ),
      needles: ["F16", "only F32"],
    },
    {
      kind: "37",
      tool: "eval",
      args: eval_(await file("json.safetensors", rawSafetensors('{"a": {"dtype": F32}}', 0))),
      needles: ["not valid UTF-8 JSON"],
    },
    {
      kind: "38",
      tool: "eval",
      args: eval_(await file("array.safetensors", rawSafetensors("[1, 2, 3]", 0))),
      needles: ["not a safetensors file"],
    },
    {
      kind: "39",
      tool: "eval",
      args: eval_(
        await file(
          "range.safetensors",
          rawSafetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 4),
        ),
      ),
      needles: ["out of range"],
    },
    {
      kind: "40",
      tool: "eval",
      args: eval_(
        await file(
          "overlap.safetensors",
          rawSafetensors(`{${a},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8),
        ),
      ),
      needles: ["overlaps"],
    },
    {
      kind: "41",
      tool: "eval",
      args: eval_(await file("trailing.safetensors", rawSafetensors(`{${a}}`, 12))),
      needles: ["after the last tensor"],
    },
    {
      kind: "42",
      tool: "eval",
      args: eval_(
        await file(
          "hole.safetensors",
          rawSafetensors(`{${a},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12),
        ),
      ),
      needles: ["belong to no tensor"],
    },
    {
      kind: "43",
      tool: "eval",
      args: eval_(await file("twice.safetensors", rawSafetensors(`{${a},${a}}`, 4))),
      needles: ['"a" twice'],
    },
    {
      kind: "44",
      tool: "eval",
      args: eval_(await file("truncated.safetensors", bytes.subarray(0, 40))),
      needles: ["past the end"],
    },
    {
      kind: "45",
      tool: "eval",
      args: eval_(teacher, "--arch", "lenet5-half"),
      needles: ["conv1.weight", "shape", "lenet5-half"],
    },
    {
      kind: "46",
      tool: "eval",
      args: eval_(
        await checkpoint(
          "no-fc3-bias.safetensors",
          await renamed((k) => k === "fc3.bias" ? null : k),
          good.metadata,
        ),
      ),
      needles: ["fc3.bias", "conv1.weight [6,1,5,5]"],
    },
    { kind: "47", tool: "eval", args: eval_(await withValue(NaN)), needles: ["fc1.weight", "NaN"] },
    {
      kind: "48",
      tool: "eval",
      args: eval_(await withValue(-Infinity)),
      needles: ["fc1.weight", "infinite", "-Infinity", "index 3"],
    },
    {
      kind: "49",
      tool: "eval",
      args: eval_(
        await checkpoint("arch.safetensors", good.tensors, { ...good.metadata, arch: "resnet18" }),
      ),
      needles: ["resnet18", "lenet5"],
    },
    {
      kind: "50",
      tool: "eval",
      args: eval_(
        await checkpoint("ds.safetensors", good.tensors, { ...good.metadata, dataset: "cifar10" }),
      ),
      needles: ['dataset "cifar10"', "fashion-mnist, mnist", "--dataset"],
    },
    {
      kind: "51",
      tool: "eval",
      args: eval_(
        await checkpoint(
          "plain.safetensors",
          Object.fromEntries(Object.entries(good.tensors).filter(([k]) => k !== "fc3.bias")),
        ),
      ),
      needles: ["names no architecture", "fit none of lenet5, lenet5-half", "--arch"],
    },
    {
      kind: "52",
      tool: "eval",
      args: eval_(
        await checkpoint(
          "foreign-names.safetensors",
          await renamed((k) => k.replace("weight", "kernel").replace("bias", "offset")),
        ),
        "--arch",
        "lenet5",
      ),
      needles: ["conv1.weight [6,1,5,5]", "fc3.bias [10]", "conv1.kernel"],
    },
    {
      kind: "53",
      tool: "eval",
      args: eval_(partial),
      needles: ["intermediate file of the unfinished run", `--resume ${run}`],
    },
  ];
  await refuseAll(cases);
});

Deno.test("eval: bad data folders name the folder or file and what to do", async () => {
  const n = 5;
  const good = idx(0x803, [n, 28, 28], new Uint8Array(n * 28 * 28));
  const labels = (ys: number[]) => idx(0x801, [ys.length], Uint8Array.from(ys));
  const empty = await dataFolder(fresh("data-empty"), {
    images: idx(0x803, [0, 28, 28], new Uint8Array()),
    labels: labels([]),
  });
  const label12 = await dataFolder(fresh("data-label"), { labels: labels([0, 12, 2, 3, 4]) });
  const big = await dataFolder(fresh("data-32"), {
    images: idx(0x803, [n, 32, 32], new Uint8Array(n * 32 * 32)),
  });
  const swapped = await dataFolder(fresh("data-swapped"), { images: labels([0, 1, 2, 3, 4]) });
  const gz = await dataFolder(fresh("data-gz"));
  const gzBytes = new Uint8Array(await promisify(gzip)(good));
  await Deno.remove(join(gz, "t10k-images-idx3-ubyte"));
  await Deno.writeFile(join(gz, "t10k-images-idx3-ubyte.gz"), gzBytes.subarray(0, 30));
  const aFile = await file("not-a-folder", good);
  const e = (dir: string) => ["--model", teacher, "--data", dir];
  const cases: Case[] = [
    { kind: "54", tool: "eval", args: e(fresh("nowhere")), needles: ["nowhere", "--data"] },
    { kind: "55", tool: "eval", args: e(aFile), needles: [`--data ${aFile}`] },
    { kind: "56", tool: "eval", args: e(empty), needles: ["hold 0 images", "re-download"] },
    {
      kind: "56 (synth)",
      tool: "synth",
      args: ["--teacher", teacher, "--data", empty],
      needles: ["hold 0 images"],
    },
    { kind: "57", tool: "eval", args: e(label12), needles: ["label 12 at index 1"] },
    { kind: "58", tool: "eval", args: e(big), needles: ["32x32", "28x28"] },
    { kind: "59", tool: "eval", args: e(swapped), needles: ["label file"] },
    { kind: "60", tool: "eval", args: e(gz), needles: ["t10k-images-idx3-ubyte.gz"] },
  ];
  await refuseAll(cases);
});

Deno.test("no data anywhere: eval and train-teacher say where they looked, punctuated", async () => {
  const home = fresh("home");
  await Deno.mkdir(home);
  // A new HOME hides ~/.cache/dfkd; Deno's own cache stays where it is.
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  const { denoDir } = JSON.parse(new TextDecoder().decode(info.stdout)) as { denoDir: string };
  const env = { HOME: home, DENO_DIR: denoDir, DFKD_DATA_DIR: "" };
  const runs = await inBatches([
    () => cli("eval", ["--model", teacher, "--dataset", "mnist"], env),
    () => cli("train_teacher", ["--dataset", "mnist", "--out", join(home, "t.st")], env),
    () => cli("eval", ["--model", teacher], env),
    () => cli("train_teacher", ["--out", join(home, "t.st")], env),
  ]);
  for (const [i, r] of runs.entries()) {
    const mnist = i < 2;
    const name = mnist ? "mnist" : "fashion-mnist";
    // Data installed in a standard place of this machine would be found: nothing to test then.
    if (await exists(`/usr/share/datasets/${name}`) || await exists(`data/${name}`)) continue;
    assertUserError(r, `no ${name} data found`, "DFKD_DATA_DIR");
    const line = r.stderr.trim();
    assert.doesNotMatch(line, /[,;]\s*$|,\s*,/, `dangling punctuation: ${line}`);
    if (mnist) assert.match(line, /\(each optionally \.gz\), or set DFKD_DATA_DIR to one$/);
    else {assert.match(
        line,
        /, or install it \(Debian\/Ubuntu: apt install dataset-fashion-mnist\)$/,
      );}
  }
  assert.equal(await exists(join(home, "t.st")), false);
});

Deno.test("synth: a teacher with all-zero weights is refused before synthesis", async () => {
  await gpuReady;
  const zeros = await renamed((k) => k);
  for (const t of Object.values(zeros)) t.data.fill(0);
  const path = await checkpoint("zero.safetensors", zeros, { arch: "lenet5" });
  const out = fresh("zero-run");
  const r = await cli("synth", [
    ...["--teacher", path, "--samples", "8", "--batch-size", "8", "--iterations", "1"],
    ...["--student-epochs", "1", "--out", out],
  ]);
  // Refused when the teacher is loaded: one line, no hint about σ, and no output folder.
  assertUserError(r, "weights are all zero", "untrained");
  assert.doesNotMatch(r.stderr, /sigma/);
  assert.equal(await exists(out), false, "nothing is written");
});

Deno.test("eval: plain PyTorch state dicts load with or without --arch; dataset names in usual spellings", async () => {
  await gpuReady;
  const { tensors } = await loadSafetensors(teacher);
  const sequential: Record<string, string> = {
    conv1: "features.0",
    conv2: "features.3",
    fc1: "classifier.0",
    fc2: "classifier.2",
    fc3: "classifier.4",
  };
  const torchName = (k: string) => `${sequential[k.split(".")[0]]}.${k.split(".")[1]}`;
  const seqPath = await checkpoint("sequential.safetensors", await renamed(torchName));
  const modulePath = await checkpoint(
    "module.safetensors",
    await renamed((k) => `module.${torchName(k)}`),
  );
  const plainPath = await checkpoint("plain-names.safetensors", tensors);
  const spelled = await checkpoint("spelled.safetensors", tensors, {
    arch: "lenet5",
    dataset: "FashionMNIST",
  });
  const mnist = await dataFolder(fresh("mnist"));
  const run = (model: string, ...more: string[]) => () =>
    cli("eval", ["--model", model, "--data", data, ...more]);
  const [reference, ...rest] = await inBatches([
    run(teacher),
    run(seqPath, "--arch", "lenet5", "--dataset", "fashion-mnist"),
    run(modulePath, "--arch", "lenet5"),
    run(plainPath, "--arch", "lenet5", "--dataset", "fmnist"),
    run(teacher, "--dataset", "FashionMNIST"),
    run(teacher, "--dataset", "fashion_mnist"),
    run(spelled),
    () => cli("eval", ["--model", teacher, "--data", mnist, "--dataset", "MNIST"]),
    run(seqPath),
    run(plainPath),
  ]);
  const ref = accuracy(reference);
  assert.match(ref, /^lenet5 fashion-mnist /);
  const [seq, mod, plain, fashion, underscore, meta, digits, ...inferred] = rest.map(accuracy);
  for (const got of [seq, mod, plain, fashion, underscore, meta]) assert.equal(got, ref);
  // no --arch, no --dataset: the architecture from the shapes, the dataset from the test set
  for (const got of inferred) assert.equal(got, ref);
  assert.equal(digits, ref.replace("fashion-mnist", "mnist"));
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
