/**
 * Accuracy sweep of the data-free distillation settings: one in-process run of `runDfkd` per
 * (setting, seed), printing a Markdown table of the student's final test accuracy (mean ± std over
 * seeds) and the synthesis and distillation times.
 *
 * Usage:
 *   deno run -A bench/sweep.ts --teacher FILE --data DIR --seeds 0,1,2 --out FILE.md \
 *     --base '{"synthesis": {"samples": 4000}}' --setting 'base={}' \
 *     --setting 'σ 3={"synthesis": {"sigma": 3}}' ...
 *
 * `--base` and each `--setting` are JSON objects of `ConfigOverrides` (src/dfkd/settings.ts) laid
 * over the defaults, the setting's last. Accuracies are those of the final epoch (choosing the best
 * epoch would use test data a data-free user does not have).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { findDataDir, loadSplit } from "../src/data/datasets.ts";
import { type ConfigOverrides, resolveConfig } from "../src/dfkd/settings.ts";
import { runDfkd } from "../src/dfkd/run.ts";
import { initGpu } from "../src/gpu/runtime.ts";
import { loadModel } from "../src/nn/checkpoint.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    teacher: { type: "string", default: "examples/teachers/lenet5-fashion-mnist.safetensors" },
    data: { type: "string" },
    seeds: { type: "string", default: "0" },
    base: { type: "string", default: "{}" },
    setting: { type: "string", multiple: true, default: ["base={}"] },
    out: { type: "string" },
  },
});

const ctx = await initGpu();
const seeds = values.seeds!.split(",").map(Number);
const base = JSON.parse(values.base!) as ConfigOverrides;
const { model: teacher, metadata } = await loadModel(values.teacher!);
const dataset = (metadata.dataset ?? "fashion-mnist") as "fashion-mnist" | "mnist";
const dir = findDataDir(dataset, values.data);
if (!dir) throw new Error(`no ${dataset} test set found; pass --data DIR`);
const testSet = await loadSplit(dir, "test");
const tmp = await Deno.makeTempDir({ prefix: "dfkd-sweep-" });
const header = [
  `Teacher \`${values.teacher}\` (${dataset}); base: \`${values.base}\` over the defaults; ` +
  `seeds ${seeds.join(", ")}; adapter: ${ctx.description}.`,
  "",
  "| setting | changes | student accuracy (mean ± std) | per seed | synthesis s | distillation s |",
  "|---|---|---|---|---|---|",
];
console.log(header.join("\n"));
const rows: string[] = [];
for (const s of values.setting!) {
  const eq = s.indexOf("=");
  const label = s.slice(0, eq);
  const change = JSON.parse(s.slice(eq + 1)) as ConfigOverrides;
  const accs: number[] = [];
  let synth = 0;
  let kd = 0;
  for (const seed of seeds) {
    const cfg = resolveConfig({ dataset, overrides: merge(merge(base, change), { seed }) });
    const out = join(tmp, `${rows.length}-${seed}`);
    const res = await runDfkd(cfg, out, {
      teacher,
      teacherName: values.teacher!,
      dataset,
      testSet,
      testSetDir: dir,
      adapter: ctx.description,
    });
    if (res.stopped) throw new Error("run stopped");
    accs.push(res.metrics.student_test_accuracy! * 100);
    synth += res.metrics.synthesis_seconds / seeds.length;
    kd += res.metrics.distillation_seconds / seeds.length;
    await Deno.remove(out, { recursive: true });
  }
  const mean = accs.reduce((a, b) => a + b, 0) / accs.length;
  const std = Math.sqrt(accs.reduce((a, b) => a + (b - mean) ** 2, 0) / accs.length);
  const row = `| ${label} | \`${JSON.stringify(change)}\` | ${mean.toFixed(1)} ± ${
    std.toFixed(1)
  }% | ${accs.map((a) => a.toFixed(1)).join(", ")} | ${synth.toFixed(0)} | ${kd.toFixed(0)} |`;
  rows.push(row);
  console.log(row);
}
if (values.out) {
  const cmd = `deno run -A bench/sweep.ts ${Deno.args.map((a) => `'${a}'`).join(" ")}`;
  await Deno.writeTextFile(
    values.out,
    [...header, ...rows, "", "Command:", "", "```sh", cmd, "```", "", ""].join("\n"),
    { append: true },
  );
}
await Deno.remove(tmp, { recursive: true });

/** `b` over `a`, stage by stage. */
function merge(a: ConfigOverrides, b: ConfigOverrides): ConfigOverrides {
  return {
    ...a,
    ...b,
    synthesis: { ...a.synthesis, ...b.synthesis },
    distillation: {
      ...a.distillation,
      ...b.distillation,
      adversarial: { ...a.distillation?.adversarial, ...b.distillation?.adversarial },
    },
  };
}
