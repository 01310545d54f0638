/**
 * Reader for the IDX format of the MNIST family (MNIST, Fashion-MNIST), plain or gzip-compressed.
 *
 * An IDX file is a 4-byte magic `0x00 0x00 <type> <ndims>`, then `ndims` big-endian u32 dimension
 * sizes, then the row-major data. The MNIST family uses type 0x08 (unsigned byte): labels are
 * `0x00000801` (1-D, `[N]`) and images `0x00000803` (3-D, `[N, 28, 28]`).
 *
 * @module
 */

import { DataError } from "../errors.ts";

export { DataError };

/** A parsed IDX array of unsigned bytes. */
export interface IdxArray {
  /** Dimension sizes, outermost first (e.g. `[60000, 28, 28]`). */
  dims: number[];
  /** Row-major values; `data.length` is the product of `dims`. */
  data: Uint8Array;
}

/** Magic of an IDX file of unsigned-byte labels, `[N]`. */
export const IDX_LABELS_MAGIC = 0x00000801;
/** Magic of an IDX file of unsigned-byte images, `[N, rows, cols]`. */
export const IDX_IMAGES_MAGIC = 0x00000803;

const REDOWNLOAD = "re-download the file (or reinstall the package that provided it)";

/** True when `bytes` starts with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Decompresses a gzip stream; a corrupt or truncated stream becomes a {@link DataError}. */
async function gunzip(bytes: Uint8Array, name: string): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (err) {
    throw new DataError(
      `${name}: bad gzip data (${(err as Error).message}); the download is probably incomplete ` +
        `or corrupt: ${REDOWNLOAD}`,
    );
  }
}

/** A hint when the bytes look like something else that is often saved by mistake. */
function lookalike(bytes: Uint8Array): string {
  const head = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart().toLowerCase();
  if (head.startsWith("<!doctype") || head.startsWith("<html")) {
    return " It is an HTML page: the download saved a web page instead of the data file.";
  }
  if (head.startsWith("version https://git-lfs")) {
    return " It is a Git LFS pointer, not the data: fetch the real file (git lfs pull).";
  }
  return "";
}

/**
 * Parses uncompressed IDX bytes of type unsigned byte. The data view shares `bytes`' memory.
 *
 * @param bytes the whole file, uncompressed.
 * @param name file name used in error messages.
 * @throws {DataError} on a wrong magic, an unsupported element type, a truncated header or data,
 *   or trailing bytes after the data.
 */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  if (bytes.length < 4) {
    throw new DataError(
      `${name}: truncated: ${bytes.length} bytes, too short for an IDX header; ${REDOWNLOAD}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[3] === 0) {
    throw new DataError(
      `${name}: not an IDX file (magic 0x${magic.toString(16).padStart(8, "0")}, expected ` +
        `0x00000801 for labels or 0x00000803 for images).${lookalike(bytes)} Point the data ` +
        `folder at the MNIST-format files *-idx1-ubyte / *-idx3-ubyte (optionally .gz).`,
    );
  }
  if (bytes[2] !== 0x08) {
    throw new DataError(
      `${name}: IDX element type 0x${bytes[2].toString(16).padStart(2, "0")} is not supported; ` +
        `only unsigned bytes (0x08), as in MNIST and Fashion-MNIST, are read.`,
    );
  }
  const ndims = bytes[3];
  const dataStart = 4 + 4 * ndims;
  if (bytes.length < dataStart) {
    throw new DataError(
      `${name}: truncated: the header declares ${ndims} dimensions but the file ends after ` +
        `${bytes.length} bytes; ${REDOWNLOAD}`,
    );
  }
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const have = bytes.length - dataStart;
  if (have !== count) {
    const what = have < count
      ? `truncated: the header declares [${dims.join(", ")}] = ${count} values but only ${have} ` +
        `bytes of data follow`
      : `${have - count} unexpected bytes after the ${count} values declared by the header ` +
        `[${dims.join(", ")}]`;
    throw new DataError(`${name}: ${what}; ${REDOWNLOAD}`);
  }
  return { dims, data: bytes.subarray(dataStart) };
}

/**
 * Parses an IDX file of unsigned bytes, gunzipping it first when it starts with the gzip magic.
 *
 * @param bytes file contents, plain or gzip.
 * @param name file name used in error messages.
 * @throws {DataError} on bad gzip data or any problem listed for {@link parseIdx}.
 */
export async function readIdx(bytes: Uint8Array, name: string): Promise<IdxArray> {
  if (bytes.length === 0) throw new DataError(`${name}: file is empty; ${REDOWNLOAD}`);
  return parseIdx(isGzip(bytes) ? await gunzip(bytes, name) : bytes, name);
}

/**
 * Reads and parses an IDX file (plain or `.gz`) from disk.
 *
 * @throws {DataError} if the file does not exist or cannot be read, or is invalid (see
 *   {@link readIdx}).
 */
export async function loadIdxFile(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new DataError(`${path}: file not found; check the data folder (see --data).`);
    }
    throw new DataError(`${path}: cannot read the file: ${(err as Error).message}`);
  }
  return await readIdx(bytes, path);
}
