/**
 * Determinism through the CLI: the same flags and --seed give a byte-identical
 * transfer-set.safetensors (and student), even when two runs share the CPU; another seed gives
 * other bytes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { saveModel } from "../src/nn/checkpoint.ts";
import { buildModel } from "../src/nn/models.ts";
import { gpuReady } from "./helpers.ts";

const SYNTH = fileURLToPath(new URL("../src/cli/synth.ts", import.meta.url));

async function synth(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SYNTH, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

const tmp = await Deno.makeTempDir({ prefix: "dfkd-determinism-" });
const teacher = join(tmp, "teacher.safetensors");
const toy = (seed: number, method = "soft-target") => [
  "--teacher",
  teacher,
  "--method",
  method,
  "--samples",
  "16",
  "--batch-size",
  "8",
  "--iterations",
  "3",
  "--student-epochs",
  "1",
  "--seed",
  String(seed),
];
const bytes = (dir: string, file = "transfer-set.safetensors") => Deno.readFile(join(dir, file));

Deno.test("same flags and seed: byte-identical outputs; another seed: other bytes", async () => {
  await gpuReady;
  const m = buildModel("lenet5", 4);
  await saveModel(teacher, m, { dataset: "fashion-mnist" });
  m.dispose();
  const [a, b, c] = ["a", "b", "c"].map((d) => join(tmp, d));
  // a and b run at the same time, so they also share the CPU.
  await Promise.all([synth([...toy(7), "--out", a]), synth([...toy(7), "--out", b])]);
  await synth([...toy(8), "--out", c]);
  assert.deepEqual(await bytes(a), await bytes(b), "same seed, different transfer sets");
  assert.deepEqual(
    await bytes(a, "student.safetensors"),
    await bytes(b, "student.safetensors"),
    "same seed, different students",
  );
  assert.notDeepEqual(await bytes(a), await bytes(c), "another seed gave the same transfer set");
});

Deno.test("the noise and softmax-space methods are deterministic too", async () => {
  for (const method of ["noise", "softmax-space"]) {
    const [a, b] = [join(tmp, `${method}-a`), join(tmp, `${method}-b`)];
    await Promise.all([
      synth([...toy(3, method), "--out", a]),
      synth([...toy(3, method), "--out", b]),
    ]);
    assert.deepEqual(await bytes(a), await bytes(b), `${method}: different transfer sets`);
  }
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
