/**
 * Named uniform layouts: a kernel's binding-0 `Params` struct written once in TypeScript as an
 * ordered list of fields, checked against the struct in the kernel's WGSL when its pipeline is
 * first built, and encoded by field name on every dispatch.
 *
 * @module
 */

/** The scalar types a uniform field may have (each 4 bytes). */
export type UniformType = "u32" | "f32";

/** One field of a uniform struct: its WGSL name and type. */
export type UniformField<F extends string = string> = readonly [name: F, type: UniformType];

/** The binding-0 uniform struct of a kernel: the WGSL struct's name and its fields in order. */
export interface UniformLayout<F extends string = string> {
  /** Name of the WGSL struct, e.g. `"ConvParams"`. */
  readonly struct: string;
  /** Fields in declaration order; field `i` lives at byte offset `4·i`. */
  readonly fields: readonly UniformField<F>[];
}

/**
 * Declares the uniform layout of a kernel; the field names become the keys that every dispatch
 * of the kernel must supply.
 *
 * @example
 * ```ts
 * const layout = uniformLayout("Params", [["n", "u32"], ["scale", "f32"]]);
 * ```
 */
export function uniformLayout<const F extends string>(
  struct: string,
  fields: readonly UniformField<F>[],
): UniformLayout<F> {
  return { struct, fields };
}

function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

function describe(fields: readonly UniformField[]): string {
  return fields.map(([n, t]) => `${n}: ${t}`).join(", ");
}

/**
 * The fields of `struct <name> { … }` in WGSL source, in order.
 *
 * @throws {Error} when the struct is missing, or a member has an attribute or a type other
 *   than `u32` or `f32`.
 */
export function parseWgslStruct(code: string, name: string): UniformField[] {
  const src = stripComments(code);
  const m = new RegExp(`\\bstruct\\s+${name}\\s*\\{([^}]*)\\}`).exec(src);
  if (!m) throw new Error(`no \`struct ${name}\` in the WGSL source`);
  const fields: UniformField[] = [];
  for (const member of m[1].split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const f = /^([A-Za-z_]\w*)\s*:\s*(\w+)$/.exec(member);
    if (!f || (f[2] !== "u32" && f[2] !== "f32")) {
      throw new Error(`struct ${name}: member \`${member}\` is not a plain u32 or f32 field`);
    }
    fields.push([f[1], f[2]]);
  }
  return fields;
}

/** Names of the structs bound as `@group(0) @binding(0) var<uniform>` in WGSL source. */
function bindingZeroStructs(code: string): string[] {
  const re = /@group\(0\)\s*@binding\(0\)\s*var\s*<\s*uniform\s*>\s*\w+\s*:\s*(\w+)/g;
  return [...stripComments(code).matchAll(re)].map((m) => m[1]);
}

/**
 * Checks a kernel's declared uniform layout against its WGSL: the struct must be the type of a
 * binding-0 uniform and have the same field names, types and order.
 *
 * @throws {Error} naming the kernel and both field lists when they disagree.
 */
export function checkUniformLayout(kernel: string, code: string, layout: UniformLayout): void {
  const where = `kernel ${kernel}: uniform struct ${layout.struct}`;
  if (!bindingZeroStructs(code).includes(layout.struct)) {
    throw new Error(`${where} is not bound as \`@group(0) @binding(0) var<uniform>\``);
  }
  const wgsl = parseWgslStruct(code, layout.struct);
  const ts = layout.fields;
  const same = wgsl.length === ts.length &&
    wgsl.every(([n, t], i) => n === ts[i][0] && t === ts[i][1]);
  if (!same) {
    throw new Error(
      `${where}: the TypeScript declaration (${describe(ts)}) disagrees with the WGSL ` +
        `(${describe(wgsl)}); declare the fields in the WGSL order`,
    );
  }
}

/**
 * Writes `values` into `view` by field name: field `i` at byte offset `4·i`, little-endian.
 *
 * @throws {RangeError} when a field is missing, a name is not a field, or a u32 value is not an
 *   integer in [0, 2³²).
 */
export function encodeUniforms(
  kernel: string,
  layout: UniformLayout,
  values: Readonly<Record<string, number>>,
  view: DataView,
): void {
  const fields = layout.fields;
  if (Object.keys(values).length > fields.length) {
    const extra = Object.keys(values).filter((k) => !fields.some(([n]) => n === k));
    throw new RangeError(
      `kernel ${kernel}: uniforms [${extra}] are not fields of ${layout.struct} ` +
        `(${describe(fields)})`,
    );
  }
  fields.forEach(([name, type], i) => {
    const v = values[name];
    if (typeof v !== "number") {
      throw new RangeError(`kernel ${kernel}: uniform ${layout.struct}.${name} is missing`);
    }
    if (type === "f32") {
      view.setFloat32(i * 4, v, true);
    } else if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      view.setUint32(i * 4, v, true);
    } else {
      throw new RangeError(
        `kernel ${kernel}: uniform ${layout.struct}.${name} is u32 but got ${v}`,
      );
    }
  });
}
