/**
 * The settings schema is the one place each setting is written: its default, range and help text
 * reach `deno task synth --help`, the validation that the library API runs, the resume rules and
 * the README's flag table, and each is checked here against the schema.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  allowedValues,
  DEFAULTS,
  getSetting,
  isAllowed,
  resolveConfig,
  SETTINGS,
  type SettingSpec,
  validateConfig,
} from "../src/dfkd/settings.ts";
import { SettingError } from "../src/errors.ts";
import { helpText } from "../src/cli/flags.ts";
import { FLAGS, flagTableMarkdown, inFlagTerms } from "../src/cli/synth_flags.ts";
import { buildModel } from "../src/nn/models.ts";
import { distill, synthesizeTransferSet } from "../src/api.ts";
import { gpuReady } from "./helpers.ts";

const README = fileURLToPath(new URL("../README.md", import.meta.url));

/** A value just outside the setting's allowed values (or of the wrong type). */
function badValue(s: SettingSpec): unknown {
  if (s.type === "boolean") return "yes";
  if (s.type === "string") return s.choices ? "no-such-choice" : 7;
  if (s.min !== undefined) return s.exclusiveMin ? s.min : s.min - 1;
  if (s.max !== undefined) return s.max + 1;
  return NaN;
}

Deno.test("settings: keys and flags are unique; every default is allowed and in DEFAULTS", () => {
  assert.equal(new Set(SETTINGS.map((s) => s.key)).size, SETTINGS.length);
  assert.equal(new Set(SETTINGS.map((s) => s.flag)).size, SETTINGS.length);
  for (const s of SETTINGS) {
    assert.ok(isAllowed(s, s.default), `${s.key}: default ${s.default} is not allowed`);
    assert.equal(getSetting(DEFAULTS, s.key), s.default, s.key);
    assert.ok(!/--[a-z]/.test(s.help), `${s.key}: the schema's help names a flag`);
  }
  validateConfig(structuredClone(DEFAULTS));
  assert.deepEqual(resolveConfig(), DEFAULTS);
});

Deno.test("settings: --help shows every setting's flag, default, range and help", () => {
  const help = helpText("usage", "about", FLAGS);
  for (const s of SETTINGS) {
    const def = typeof s.default === "boolean" ? (s.default ? "on" : "off") : String(s.default);
    const line = help.split("\n").findIndex((l) => l.startsWith(`  --${s.flag} `));
    assert.ok(line >= 0, `--${s.flag} missing from --help`);
    const text = help.split("\n")[line + 1].trim();
    assert.equal(text, `${inFlagTerms(s.help)} (default: ${def})`);
    if (s.choices) assert.ok(help.split("\n")[line].includes(s.choices.join("|")), s.flag);
    // The flag's range is the schema's.
    const f = FLAGS[s.flag];
    assert.deepEqual([f.min, f.max, f.exclusiveMin], [s.min, s.max, s.exclusiveMin], s.flag);
  }
});

Deno.test("settings: the library refuses every out-of-range setting, naming its key", async () => {
  await gpuReady;
  const teacher = buildModel("lenet5", 1);
  const one = { images: new Float32Array(1024), softTargets: new Float32Array(10), count: 1 };
  try {
    for (const s of SETTINGS) {
      const bad = badValue(s);
      const over: Record<string, unknown> = {};
      const parts = s.key.split(".");
      let o = over;
      for (const p of parts.slice(0, -1)) o = (o[p] = {}) as Record<string, unknown>;
      o[parts.at(-1)!] = bad;
      const named = (e: unknown) =>
        e instanceof SettingError && e.key === s.key && e.message.includes(allowedValues(s));
      assert.throws(() => resolveConfig({ overrides: over }), named, `${s.key} = ${bad}`);
      // The API functions take a stage's settings (and the seed and log interval) directly.
      const [stage, ...rest] = parts;
      if (stage === "synthesis") {
        const opts = { samples: 1, iterations: 1, [rest[0]]: bad };
        await assert.rejects(synthesizeTransferSet(teacher, opts), named, s.key);
      } else if (stage === "distillation") {
        const opts = rest.length === 2 ? { adversarial: { [rest[1]]: bad } } : { [rest[0]]: bad };
        await assert.rejects(distill(teacher, { ...one, seconds: 0 }, opts), named, s.key);
      } else {
        await assert.rejects(synthesizeTransferSet(teacher, { samples: 1, [s.key]: bad }), named);
      }
    }
  } finally {
    teacher.dispose();
  }
});

/** The cells of each Markdown table row in `text`, trimmed (`deno fmt` pads them). */
function tableRows(text: string): string[][] {
  return text.split("\n").filter((l) => l.startsWith("|") && !/^\|\s*-/.test(l)).map((l) =>
    l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim())
  );
}

Deno.test("settings: the README's flag table is the schema's", async () => {
  const readme = tableRows(await Deno.readTextFile(README)).map((r) => r.join(" | "));
  const table = tableRows(flagTableMarkdown()).map((r) => r.join(" | "));
  const start = readme.indexOf(table[0]);
  assert.ok(start >= 0, "README.md has no flag table (header row `| flag | default | meaning |`)");
  assert.deepEqual(
    readme.slice(start, start + table.length),
    table,
    "README.md's flag table differs from the schema; paste the output of " +
      "`deno run -A src/cli/synth_flags.ts` into it",
  );
});
