/**
 * Named uniform layouts: parsing the WGSL struct, refusing a declaration that disagrees with
 * it, and encoding values by field name.
 */

import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  checkUniformLayout,
  encodeUniforms,
  parseWgslStruct,
  uniformLayout,
} from "../src/gpu/_uniforms.ts";
import { dispatch } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { gpuReady } from "./helpers.ts";

const WGSL = `
// a comment with struct Params { fake: f32 }
struct Params {
  n: u32, // elements
  /* inline */ scale: f32,
  flip: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < p.n) { out[id.x] = p.scale * f32(p.flip); }
}
`;

/** Asserts that `f` throws an error whose message contains every one of `parts`. */
function throwsWith(f: () => unknown, ...parts: string[]): void {
  throws(f, (e: unknown) => e instanceof Error && parts.every((s) => e.message.includes(s)));
}

Deno.test("parseWgslStruct reads fields in order, skipping comments", () => {
  assertEquals(parseWgslStruct(WGSL, "Params"), [["n", "u32"], ["scale", "f32"], ["flip", "u32"]]);
  throwsWith(() => parseWgslStruct(WGSL, "Other"), "struct Other");
  throwsWith(() => parseWgslStruct("struct A { v: vec4<f32> }", "A"), "v: vec4<f32>");
});

Deno.test("a declaration that matches the WGSL struct is accepted", () => {
  const ok = uniformLayout("Params", [["n", "u32"], ["scale", "f32"], ["flip", "u32"]]);
  checkUniformLayout("test", WGSL, ok);
});

Deno.test("a declaration that disagrees with the WGSL struct is refused", () => {
  const swapped = uniformLayout("Params", [["scale", "f32"], ["n", "u32"], ["flip", "u32"]]);
  throwsWith(() => checkUniformLayout("k", WGSL, swapped), "kernel k", "scale: f32, n: u32");
  const retyped = uniformLayout("Params", [["n", "u32"], ["scale", "u32"], ["flip", "u32"]]);
  throwsWith(() => checkUniformLayout("k", WGSL, retyped), "scale: u32", "scale: f32");
  const short = uniformLayout("Params", [["n", "u32"], ["scale", "f32"]]);
  throwsWith(() => checkUniformLayout("k", WGSL, short), "disagrees");
  const unbound = uniformLayout("Other", [["n", "u32"]]);
  throwsWith(
    () => checkUniformLayout("k", `struct Other { n: u32 }\n${WGSL}`, unbound),
    "binding(0)",
  );
});

Deno.test("encodeUniforms writes by name and refuses missing, unknown and bad values", () => {
  const layout = uniformLayout("Params", [["n", "u32"], ["scale", "f32"], ["flip", "u32"]]);
  const view = new DataView(new ArrayBuffer(16));
  encodeUniforms("k", layout, { flip: 1, scale: 0.5, n: 7 }, view);
  assertEquals([view.getUint32(0, true), view.getFloat32(4, true), view.getUint32(8, true)], [
    7,
    0.5,
    1,
  ]);
  throwsWith(() => encodeUniforms("k", layout, { n: 1, scale: 1 }, view), "Params.flip");
  throwsWith(() => encodeUniforms("k", layout, { n: 1, scale: 1, flip: 0, x: 2 }, view), "[x]");
  throwsWith(() => encodeUniforms("k", layout, { n: -1, scale: 1, flip: 0 }, view), "Params.n");
  throwsWith(() => encodeUniforms("k", layout, { n: 1.5, scale: 1, flip: 0 }, view), "u32");
});

Deno.test("dispatch refuses a kernel whose declared uniforms disagree with its WGSL", async () => {
  await gpuReady;
  const out = Tensor.zeros([64]);
  const bad = {
    name: "test.mismatch",
    code: WGSL,
    uniforms: uniformLayout("Params", [["n", "u32"], ["flip", "u32"], ["scale", "f32"]]),
  };
  throwsWith(
    () => dispatch(bad, [out.buffer], { n: 64, flip: 1, scale: 2 }, 1),
    "kernel test.mismatch",
    "n: u32, flip: u32, scale: f32",
  );
  const good = {
    ...bad,
    name: "test.match",
    uniforms: uniformLayout("Params", [
      ["n", "u32"],
      ["scale", "f32"],
      ["flip", "u32"],
    ]),
  };
  dispatch(good, [out.buffer], { n: 64, scale: 2, flip: 1 }, 1);
  assertEquals(Array.from(await out.read()), new Array(64).fill(2));
  out.dispose();
});
