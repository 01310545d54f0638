/**
 * Rules of the code's shape: no function under `src/` longer than 80 lines (`deno task lengths`
 * prints the longest), and no string under `src/dfkd`, `src/nn` or `src/ops` that names a
 * command-line flag (the library speaks of settings by their keys; the CLI shows flags).
 */

import assert from "node:assert/strict";
import ts from "typescript";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { functionLengths } from "./function_lengths.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

Deno.test("structure: no function under src/ is longer than 80 lines", async () => {
  const long = (await functionLengths()).filter((f) => f.lines > 80);
  assert.deepEqual(long, [], long.map((f) => `${f.lines} ${f.name} ${f.where}`).join("\n"));
});

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

Deno.test("structure: no string in src/dfkd, src/nn, src/ops names a command-line flag", async () => {
  const found: string[] = [];
  for (const folder of ["src/dfkd", "src/nn", "src/ops"]) {
    for await (const path of tsFiles(join(ROOT, folder))) {
      const file = ts.createSourceFile(path, await Deno.readTextFile(path), ts.ScriptTarget.Latest);
      const visit = (node: ts.Node) => {
        if (ts.isStringLiteralLike(node) || ts.isTemplateLiteralToken(node)) {
          const text = node.text;
          if (/(^|[\s(`'"])--[a-z][a-z-]*/.test(text)) {
            const line = file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1;
            found.push(`${relative(ROOT, path)}:${line}: ${text}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(file);
    }
  }
  assert.deepEqual(found, [], found.join("\n"));
});
