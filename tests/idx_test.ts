/**
 * Tests of the IDX reader on hand-built files: plain, gzipped, and each kind of corruption.
 */

import assert, { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import { DataError, isGzip, loadIdxFile, parseIdx, readIdx } from "../src/data/idx.ts";

/** An IDX file of unsigned bytes with the given dims and data. */
function idxBytes(dims: number[], data: Uint8Array, magicType = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  out[2] = magicType;
  out[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** Asserts a DataError whose message names `name` and contains every fragment. */
function isDataError(name: string, ...fragments: string[]) {
  return (err: unknown) => {
    assert(err instanceof DataError, `expected DataError, got ${err}`);
    assert(err.message.includes(name), `message does not name the file: ${err.message}`);
    for (const f of fragments) assert(err.message.includes(f), `no "${f}" in: ${err.message}`);
    return true;
  };
}

const images = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 7);

Deno.test("idx: parses labels (0x801) and images (0x803) with big-endian dims", () => {
  const lab = parseIdx(idxBytes([5], Uint8Array.of(3, 1, 4, 1, 5)), "labels");
  assertEquals(lab.dims, [5]);
  assertEquals([...lab.data], [3, 1, 4, 1, 5]);
  const bytes = idxBytes([2, 3, 4], images);
  assertEquals([...bytes.subarray(0, 8)], [0, 0, 8, 3, 0, 0, 0, 2]);
  const img = parseIdx(bytes, "images");
  assertEquals(img.dims, [2, 3, 4]);
  assertEquals([...img.data], [...images]);
  // Dimensions above 255 exercise all bytes of the big-endian u32.
  const big = parseIdx(idxBytes([70000], new Uint8Array(70000)), "big");
  assertEquals(big.dims, [70000]);
});

Deno.test("idx: readIdx gunzips when the gzip magic is present", async () => {
  const plain = idxBytes([2, 3, 4], images);
  const gz = await gzip(plain);
  assert(isGzip(gz) && !isGzip(plain));
  const a = await readIdx(gz, "x.gz");
  assertEquals(a.dims, [2, 3, 4]);
  assertEquals([...a.data], [...images]);
  assertEquals((await readIdx(plain, "x")).dims, [2, 3, 4]);
});

Deno.test("idx: wrong magic, truncation, trailing bytes and bad types are DataErrors", async () => {
  throws(() => parseIdx(Uint8Array.of(0, 0), "tiny"), isDataError("tiny", "truncated"));
  throws(
    () => parseIdx(new TextEncoder().encode("<!DOCTYPE html><html>..."), "page"),
    isDataError("page", "not an IDX file", "HTML page"),
  );
  throws(
    () => parseIdx(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), "junk"),
    isDataError("junk", "not an IDX file", "0x01020304"),
  );
  throws(
    () => parseIdx(idxBytes([2], Uint8Array.of(1, 2), 0x0d), "floats"),
    isDataError("floats", "0x0d", "not supported"),
  );
  const full = idxBytes([2, 3, 4], images);
  throws(
    () => parseIdx(full.subarray(0, full.length - 1), "short"),
    isDataError("short", "truncated", "24 values", "23 bytes"),
  );
  throws(() => parseIdx(full.subarray(0, 10), "hdr"), isDataError("hdr", "truncated", "3 dim"));
  const extra = new Uint8Array(full.length + 3);
  extra.set(full);
  throws(() => parseIdx(extra, "long"), isDataError("long", "3 unexpected bytes"));
  await rejects(() => readIdx(new Uint8Array(0), "empty"), isDataError("empty", "empty"));
});

Deno.test("idx: corrupt or truncated gzip is a DataError saying to re-download", async () => {
  const gz = await gzip(idxBytes([2, 3, 4], images));
  const cut = gz.subarray(0, gz.length - 12);
  await rejects(() => readIdx(cut, "cut.gz"), (err: unknown) => {
    // A cut stream either fails in gunzip or yields too few bytes; both must be DataErrors.
    return isDataError("cut.gz", "re-download")(err);
  });
  const bad = gz.slice();
  for (let i = 10; i < bad.length - 8; i++) bad[i] ^= 0x5a;
  await rejects(() => readIdx(bad, "bad.gz"), isDataError("bad.gz", "bad gzip", "re-download"));
});

Deno.test("idx: loadIdxFile reads from disk and names a missing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/labels-idx1-ubyte.gz`;
    await Deno.writeFile(p, await gzip(idxBytes([3], Uint8Array.of(9, 8, 7))));
    const a = await loadIdxFile(p);
    assertEquals([...a.data], [9, 8, 7]);
    await rejects(() => loadIdxFile(`${dir}/nope`), isDataError(`${dir}/nope`, "not found"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
