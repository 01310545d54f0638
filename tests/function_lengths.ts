/**
 * The longest functions under `src/`: every function declaration, method, arrow function and
 * function expression, measured in source lines from its first to its last line (as `deno fmt`
 * lays it out), found with the TypeScript compiler's parser.
 *
 * Usage: `deno task lengths [N]` prints the N longest (default 10).
 *
 * @module
 */

import ts from "typescript";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** One function and its length in lines. */
export interface FunctionLength {
  /** `path:line` of its first line, relative to the repository root. */
  where: string;
  /** Its name, or `<arrow>` / `<function>` for an anonymous one. */
  name: string;
  lines: number;
}

const ROOT = fileURLToPath(new URL("../", import.meta.url));

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

function nameOf(node: ts.Node): string {
  const n = (node as { name?: ts.Node }).name;
  if (n && ts.isIdentifier(n)) return n.text;
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  if (parent && ts.isPropertyAssignment(parent) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  return ts.isArrowFunction(node) ? "<arrow>" : "<function>";
}

/** Every function under `src/` (or `dir`) with its length, longest first. */
export async function functionLengths(dir = join(ROOT, "src")): Promise<FunctionLength[]> {
  const out: FunctionLength[] = [];
  for await (const path of tsFiles(dir)) {
    const text = await Deno.readTextFile(path);
    const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node) => {
      if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body) {
        const first = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
        const last = file.getLineAndCharacterOfPosition(node.getEnd()).line;
        out.push({
          where: `${relative(ROOT, path)}:${first + 1}`,
          name: nameOf(node),
          lines: last - first + 1,
        });
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return out.sort((a, b) => b.lines - a.lines || a.where.localeCompare(b.where));
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 10);
  for (const f of (await functionLengths()).slice(0, n)) {
    console.log(`${String(f.lines).padStart(4)}  ${f.name}  ${f.where}`);
  }
}
