/**
 * The safetensors checkpoint format, f32 tensors, readable and writable by the Python
 * `safetensors` library.
 *
 * Layout: an 8-byte little-endian u64 `N`; `N` bytes of UTF-8 JSON (padded with spaces so the data
 * starts at a multiple of 8); then the data buffer. The JSON maps each tensor name to
 * `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` (byte offsets into the data
 * buffer, little-endian, row-major) and may hold `"__metadata__": {string: string}`.
 *
 * Reading is strict in the same ways as the reference implementation: the tensors must tile the
 * data buffer exactly (no overlaps, no holes, no trailing bytes), since anything else means a
 * corrupt or hand-edited file.
 *
 * @module
 */

import { writeFileAtomic } from "../io/atomic.ts";

import { CheckpointError } from "../errors.ts";

export { CheckpointError };

/** A named f32 tensor on the CPU: row-major `data` of `shape`. */
export interface HostTensor {
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Row-major values; length is the product of `shape`. */
  data: Float32Array;
}

/** Decoded contents of a safetensors file. */
export interface SafetensorsContents {
  /** Tensors by name. */
  tensors: Record<string, HostTensor>;
  /** The `__metadata__` strings (empty if absent). */
  metadata: Record<string, string>;
}

/** Header longer than this is refused, as in the reference implementation. */
const MAX_HEADER = 100_000_000;
const METADATA_KEY = "__metadata__";

/** Byte sizes of the dtypes the format defines; only F32 is loaded. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isShape(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/**
 * Serialises f32 tensors and string metadata. Tensors are laid out in sorted name order, so equal
 * inputs give identical bytes.
 *
 * @throws {RangeError} if a name is empty or `"__metadata__"`, a shape is not a list of
 *   non-negative integers, `data.length` differs from the product of `shape`, or a metadata value
 *   is not a string.
 */
export function encodeSafetensors(
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new RangeError(`safetensors metadata "${k}" must be a string, got ${typeof v}`);
      }
    }
    header[METADATA_KEY] = { ...metadata };
  }
  let offset = 0;
  for (const name of names) {
    if (name === "" || name === METADATA_KEY) {
      throw new RangeError(`invalid safetensors tensor name "${name}"`);
    }
    const { shape, data } = tensors[name];
    if (!isShape(shape)) {
      throw new RangeError(`tensor "${name}": shape [${shape}] is not a list of integers >= 0`);
    }
    if (!(data instanceof Float32Array) || data.length !== elementCount(shape)) {
      throw new RangeError(
        `tensor "${name}": shape [${shape}] needs ${elementCount(shape)} f32 values, ` +
          `got ${(data as { length?: number })?.length}`,
      );
    }
    const end = offset + data.length * 4;
    header[name] = { dtype: "F32", shape: [...shape], data_offsets: [offset, end] };
    offset = end;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const base = 8 + json.length;
  for (const name of names) {
    const { data } = tensors[name];
    const [begin] = (header[name] as { data_offsets: number[] }).data_offsets;
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), base + begin);
    } else {
      for (let i = 0; i < data.length; i++) view.setFloat32(base + begin + 4 * i, data[i], true);
    }
  }
  return out;
}

/** Recognises common files that are mistaken for safetensors. */
function describeForeign(bytes: Uint8Array): string | null {
  if (bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) {
    return "it is a ZIP archive, probably a PyTorch .pt/.pth checkpoint; convert it with " +
      "safetensors.torch.save_file(model.state_dict(), path) in Python";
  }
  if (bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5) {
    return "it is a Python pickle (old PyTorch format); load it in Python and save it with " +
      "safetensors.torch.save_file";
  }
  if (bytes[0] === 0x89 && bytes[1] === 0x48 && bytes[2] === 0x44 && bytes[3] === 0x46) {
    return "it is an HDF5 file (e.g. Keras .h5); export the weights with safetensors instead";
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    return "it is gzip-compressed; decompress it first";
  }
  return null;
}

/**
 * The first key that occurs twice at the top level of the JSON object `text` (which must be valid
 * JSON), or null. `JSON.parse` keeps the last of duplicate keys silently; the format forbids them.
 */
export function duplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
      i = j;
    } else if (ch === "{" || ch === "[") {
      depth++;
      expectKey = depth === 1 && ch === "{";
    } else if (ch === "}" || ch === "]") depth--;
    else if (ch === "," && depth === 1) expectKey = true;
  }
  return null;
}

/** A tensor's place in the data buffer, as the header gives it. */
interface TensorInfo {
  name: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * The metadata and the tensors of a parsed header, each entry checked: dtype F32, a valid shape,
 * `data_offsets` in range and spanning exactly the shape's bytes.
 */
function headerEntries(
  header: Record<string, unknown>,
  dataLen: number,
  fail: (what: string) => never,
): { metadata: Record<string, string>; infos: TensorInfo[] } {
  let metadata: Record<string, string> = {};
  const infos: TensorInfo[] = [];
  for (const [key, value] of Object.entries(header)) {
    if (key === METADATA_KEY) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail(`"${METADATA_KEY}" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`metadata "${k}" must be a string, got ${typeof v}`);
      }
      metadata = Object.fromEntries(Object.entries(value as Record<string, string>));
      continue;
    }
    infos.push(tensorInfo(key, value, dataLen, fail));
  }
  return { metadata, infos };
}

/** One tensor entry of the header, checked. */
function tensorInfo(
  key: string,
  value: unknown,
  dataLen: number,
  fail: (what: string) => never,
): TensorInfo {
  const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof info !== "object" || info === null) fail(`tensor "${key}": entry is not an object`);
  const { dtype, shape, data_offsets: off } = info;
  if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
    fail(`tensor "${key}": unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (dtype !== "F32") {
    fail(
      `tensor "${key}" has dtype ${dtype}; only F32 is supported: save the model in float32 ` +
        `(in PyTorch: {k: v.float() for k, v in state_dict.items()})`,
    );
  }
  if (!isShape(shape)) fail(`tensor "${key}": shape ${JSON.stringify(shape)} is invalid`);
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o))) {
    fail(`tensor "${key}": data_offsets ${JSON.stringify(off)} must be [begin, end]`);
  }
  const [begin, end] = off as number[];
  if (begin < 0 || end < begin || end > dataLen) {
    fail(
      `tensor "${key}": data_offsets [${begin}, ${end}] are out of range of the ` +
        `${dataLen}-byte data buffer (truncated file?)`,
    );
  }
  const want = elementCount(shape as number[]) * 4;
  if (end - begin !== want) {
    fail(
      `tensor "${key}": shape [${shape}] of F32 needs ${want} bytes but data_offsets ` +
        `[${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { name: key, shape: [...(shape as number[])], begin, end };
}

/** The tensors must tile the data buffer exactly: no overlaps, no holes, no trailing bytes. */
function checkTiling(infos: TensorInfo[], dataLen: number, fail: (what: string) => never): void {
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i];
    if (t.begin < cursor) {
      fail(`tensor "${t.name}" [${t.begin}, ${t.end}] overlaps "${sorted[i - 1].name}"`);
    }
    if (t.begin > cursor) {
      fail(`bytes [${cursor}, ${t.begin}) before tensor "${t.name}" belong to no tensor`);
    }
    cursor = t.end;
  }
  if (cursor !== dataLen) {
    fail(
      `${dataLen - cursor} bytes after the last tensor belong to no tensor (the file was ` +
        `appended to or corrupted)`,
    );
  }
}

/**
 * Parses a safetensors file holding f32 tensors.
 *
 * @param bytes the whole file.
 * @param name file name used in error messages.
 * @returns tensors (copies, independent of `bytes`) and metadata.
 * @throws {CheckpointError} if the file is empty or truncated, is not a safetensors file, the
 *   header length runs past the end of the file, the header is not valid JSON or not of the
 *   documented structure, names a tensor twice, a tensor has a dtype other than F32, offsets
 *   are out of range, overlapping or leave holes, or a byte count disagrees with a shape.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  name = "<safetensors bytes>",
): SafetensorsContents {
  const fail = (what: string): never => {
    throw new CheckpointError(`${name}: ${what}`);
  };
  const { header, headerLen } = readHeader(bytes, fail);
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const { metadata, infos } = headerEntries(header, dataLen, fail);
  checkTiling(infos, dataLen, fail);
  return { tensors: tensorData(bytes, dataStart, infos), metadata };
}

/**
 * The header of a safetensors file: its length, then a JSON object without duplicate names.
 * Other formats are diagnosed by their magic numbers once the bytes fail as safetensors.
 */
function readHeader(
  bytes: Uint8Array,
  fail: (what: string) => never,
): { header: Record<string, unknown>; headerLen: number } {
  if (bytes.length === 0) fail("file is empty (an interrupted save?); use another checkpoint");
  if (bytes.length < 8) {
    fail(`truncated: ${bytes.length} bytes, too short for the 8-byte header length`);
  }
  // Other formats are only diagnosed once the bytes fail as safetensors: their magic numbers
  // are also plausible header lengths.
  const notSafetensors = (why: string): never => {
    const foreign = describeForeign(bytes);
    return fail(`not a safetensors file: ${foreign ?? why}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n === 0n) notSafetensors("header length is 0");
  if (n > BigInt(bytes.length - 8)) {
    if (describeForeign(bytes)) notSafetensors("");
    fail(
      `header length ${n} runs past the end of the file (${bytes.length} bytes): the file is ` +
        `truncated or not a safetensors file`,
    );
  }
  if (n > BigInt(MAX_HEADER)) fail(`header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  const headerLen = Number(n);
  if (bytes[8] !== 0x7b /* { */) notSafetensors("the header does not start with '{'");
  let header: unknown;
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
    header = JSON.parse(text);
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message}); the file is corrupt`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const dup = duplicateTopLevelKey(text);
  if (dup !== null) {
    fail(
      `the header names "${dup}" twice (the format forbids duplicate names); the file was ` +
        `written by a faulty tool or edited by hand`,
    );
  }
  return { header: header as Record<string, unknown>, headerLen };
}

/** Copies of the tensors' data (aligned, little-endian read on any host). */
function tensorData(
  bytes: Uint8Array,
  dataStart: number,
  infos: TensorInfo[],
): Record<string, HostTensor> {
  return Object.fromEntries(infos.map(({ name: key, shape, begin, end }) => {
    const raw = bytes.slice(dataStart + begin, dataStart + end); // aligned copy
    let data: Float32Array;
    if (LITTLE_ENDIAN) data = new Float32Array(raw.buffer);
    else {
      const v = new DataView(raw.buffer);
      data = new Float32Array(raw.length / 4);
      for (let i = 0; i < data.length; i++) data[i] = v.getFloat32(4 * i, true);
    }
    return [key, { shape, data }];
  }));
}

/**
 * Writes tensors and metadata to `path` as safetensors, atomically (a crash leaves the previous
 * file intact).
 * @throws {RangeError} as {@link encodeSafetensors}; file-system errors from the write.
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/**
 * Reads a safetensors file of f32 tensors.
 * @throws {CheckpointError} if the file is missing or unreadable, or invalid (see
 *   {@link decodeSafetensors}).
 */
export async function loadSafetensors(path: string): Promise<SafetensorsContents> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new CheckpointError(`${path}: checkpoint file not found`);
    }
    const isDir = await Deno.stat(path).then((s) => s.isDirectory, () => false);
    if (isDir) {
      throw new CheckpointError(
        `${path} is a folder, not a checkpoint file; pass the .safetensors file itself`,
      );
    }
    throw new CheckpointError(`${path}: cannot read the checkpoint: ${(err as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}
