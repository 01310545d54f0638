/**
 * The balance pilot of `--balance auto` on a list of teachers: for each teacher and seed, the
 * share of the pilot's soft targets in their largest class and whether class balance turns on
 * (`balancePilot` in `src/dfkd/transfer_set.ts`). Prints a Markdown table.
 *
 *     deno run -A bench/balance_pilot.ts [--seeds 0,1,2] TEACHER.safetensors…
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULTS } from "../src/dfkd/settings.ts";
import { balancePilot, PILOT_SKEW, teacherFeatureModel } from "../src/dfkd/transfer_set.ts";
import { initGpu } from "../src/gpu/runtime.ts";
import { loadModel } from "../src/nn/checkpoint.ts";

const args = parseArgs({
  options: { seeds: { type: "string", default: "0,1,2" } },
  allowPositionals: true,
});
const seeds = args.values.seeds!.split(",").map(Number);
await initGpu();
console.log(
  `| teacher | largest class of the pilot's soft targets (seeds ${seeds.join(", ")}) | balance |`,
);
console.log("|---|---|---|");
for (const file of args.positionals) {
  const { model } = await loadModel(file);
  const fm = await teacherFeatureModel(model, DEFAULTS.synthesis);
  if (!fm) throw new Error(`${file}: no feature-space model`);
  const pilots = [];
  for (const seed of seeds) pilots.push(await balancePilot(model, fm, seed));
  const shares = pilots.map((p) => `${(p.largestShare * 100).toFixed(1)}%`).join(" / ");
  const on = pilots.map((p) => (p.balance ? "on" : "off")).join(" / ");
  console.log(`| \`${file.split("/").pop()!.replace(".safetensors", "")}\` | ${shares} | ${on} |`);
  model.dispose();
}
console.log(`\nBalance turns on above ${PILOT_SKEW} / classes.`);
