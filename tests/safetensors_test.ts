/**
 * Tests of the safetensors reader/writer: exact bytes against a file built by hand from the format
 * specification, round trips, and every corrupt case the reader must refuse.
 */

import assert, { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import {
  CheckpointError,
  decodeSafetensors,
  duplicateTopLevelKey,
  encodeSafetensors,
  type HostTensor,
  loadSafetensors,
  saveSafetensors,
} from "../src/nn/safetensors.ts";

const enc = new TextEncoder();

/** A file assembled byte by byte as the specification describes it. */
function handBuilt(headerJson: string, data: number[], pad = true): Uint8Array {
  let header = headerJson;
  if (pad) { while ((header.length) % 8 !== 0) header += " "; }
  const h = enc.encode(header);
  const n = h.length;
  const lengthBytes = [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff, 0, 0, 0, 0];
  return Uint8Array.from([...lengthBytes, ...h, ...data]);
}

// 1.0f = 0x3f800000, -2.5f = 0xc0200000, 0.5f = 0x3f000000, little-endian.
const ONE = [0x00, 0x00, 0x80, 0x3f];
const MINUS_2_5 = [0x00, 0x00, 0x20, 0xc0];
const HALF = [0x00, 0x00, 0x00, 0x3f];

function isCheckpointError(...fragments: string[]) {
  return (err: unknown) => {
    assert(err instanceof CheckpointError, `expected CheckpointError, got ${err}`);
    for (const f of fragments) assert(err.message.includes(f), `no "${f}" in: ${err.message}`);
    return true;
  };
}

Deno.test("safetensors: encoder output equals the hand-built specification bytes", () => {
  const expected = handBuilt(
    '{"__metadata__":{"format":"pt"},' +
      '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
      '"b":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]}}',
    [...ONE, ...MINUS_2_5, ...HALF],
  );
  // Tensors are given out of order: the encoder sorts names.
  const got = encodeSafetensors({
    b: { shape: [1, 1], data: Float32Array.of(0.5) },
    a: { shape: [2], data: Float32Array.of(1, -2.5) },
  }, { format: "pt" });
  assertEquals([...got], [...expected]);
  assertEquals((8 + new DataView(got.buffer).getUint32(0, true)) % 8, 0); // data 8-aligned
});

Deno.test("safetensors: decodes hand-built files, any key order, padded or not", () => {
  const file = handBuilt(
    '{"w":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]},' +
      '"s":{"shape":[],"dtype":"F32","data_offsets":[0,4]},' +
      '"e":{"dtype":"F32","shape":[0,3],"data_offsets":[12,12]},' +
      '"__metadata__":{"epoch":"3","note":"ünïcode"}}',
    [...HALF, ...ONE, ...MINUS_2_5],
    false, // header length 171 -> tensor data at an unaligned offset
  );
  const { tensors, metadata } = decodeSafetensors(file, "hand.safetensors");
  assertEquals(metadata, { epoch: "3", note: "ünïcode" });
  assertEquals(Object.keys(tensors).sort(), ["e", "s", "w"]);
  assertEquals(tensors.w.shape, [1, 2]);
  assertEquals([...tensors.w.data], [1, -2.5]);
  assertEquals(tensors.s.shape, []);
  assertEquals([...tensors.s.data], [0.5]);
  assertEquals(tensors.e.data.length, 0);
  // No metadata at all is fine.
  const bare = handBuilt('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', ONE);
  assertEquals(decodeSafetensors(bare).metadata, {});
});

Deno.test("safetensors: round trip preserves names, shapes, values and metadata", async () => {
  const rnd = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3) * 1e3);
  const tensors: Record<string, HostTensor> = {
    "conv1.weight": { shape: [6, 1, 5, 5], data: rnd(150) },
    "conv1.bias": { shape: [6], data: rnd(6) },
    "fc.weight": { shape: [10, 7], data: rnd(70) },
    "special": { shape: [4], data: Float32Array.of(NaN, Infinity, -0, 1e-45) },
  };
  // A view with a non-zero byteOffset must be written from its own window.
  const big = rnd(20);
  tensors.view = { shape: [3], data: big.subarray(5, 8) };
  const meta = { arch: "lenet5", json: JSON.stringify({ lr: 0.1 }) };
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/model.safetensors`;
    await saveSafetensors(path, tensors, meta);
    const back = await loadSafetensors(path);
    assertEquals(back.metadata, meta);
    assertEquals(Object.keys(back.tensors).sort(), Object.keys(tensors).sort());
    for (const [k, t] of Object.entries(tensors)) {
      assertEquals(back.tensors[k].shape, t.shape);
      assertEquals(back.tensors[k].data, t.data, k); // Object.is per element: NaN, -0 kept
    }
    assertEquals([...Deno.readDirSync(dir)].length, 1); // no temp files left behind
    await rejects(() => loadSafetensors(`${dir}/absent`), isCheckpointError("absent", "not found"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("safetensors: encoder validates its inputs", () => {
  throws(() => encodeSafetensors({ a: { shape: [2, 2], data: new Float32Array(3) } }), RangeError);
  throws(() => encodeSafetensors({ a: { shape: [-1], data: new Float32Array(0) } }), RangeError);
  throws(() => encodeSafetensors({ __metadata__: { shape: [0], data: new Float32Array(0) } }));
  throws(
    () => encodeSafetensors({}, { a: 1 as unknown as string }),
    RangeError,
  );
});

Deno.test("safetensors: every corrupt file is a CheckpointError naming file and problem", () => {
  const good = encodeSafetensors({
    a: { shape: [2], data: Float32Array.of(1, 2) },
    b: { shape: [1], data: Float32Array.of(3) },
  });
  const name = "ckpt.safetensors";
  const check = (bytes: Uint8Array, ...fragments: string[]) =>
    throws(() => decodeSafetensors(bytes, name), isCheckpointError(name, ...fragments));
  const header = (json: string, data: number[]) => handBuilt(json, data);
  const f32 = (json: string, n: number) => header(json, new Array(4 * n).fill(0));

  check(new Uint8Array(0), "empty");
  check(Uint8Array.of(1, 2, 3), "truncated");
  check(good.subarray(0, good.length - 1), "out of range");
  check(good.subarray(0, 20), "header length", "past the end");
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(4, 1, true); // length >= 2^32
  check(huge, "past the end");
  check(Uint8Array.of(0x50, 0x4b, 3, 4, 20, 0, 0, 0, 0, 0), "not a safetensors file", "PyTorch");
  check(enc.encode("not a checkpoint at all, just some text"), "past the end");
  check(handBuilt("[1,2,3]", []), "not a safetensors file", "'{'");
  check(handBuilt('{"a": tru', []), "not valid UTF-8 JSON");
  check(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0), "not valid UTF-8 JSON");
  check(f32('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', 1), "F16", "only F32");
  check(f32('{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}', 2), "unknown dtype");
  check(f32('{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}', 2), "shape");
  check(f32('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', 2), "data_offsets");
  check(f32('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}', 2), "out of range");
  check(f32('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 2), "needs 12 bytes");
  check(
    f32(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
      3,
    ),
    "overlaps",
  );
  check(
    f32(
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
      3,
    ),
    "belong to no tensor",
  );
  check(f32('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 2), "after the last");
  check(f32('{"__metadata__":{"epoch":3}}', 0), "metadata", "string");
  check(f32('{"a":[1,2]}', 0), "dtype");
});

Deno.test("safetensors: a tensor or metadata named twice in the header is refused", () => {
  const name = "dup.safetensors";
  const a = '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  const check = (json: string, n: number, key: string) =>
    throws(
      () => decodeSafetensors(handBuilt(json, new Array(4 * n).fill(0)), name),
      isCheckpointError(name, `"${key}" twice`, "duplicate"),
    );
  check(`{${a},${a}}`, 1, "a");
  // The same name spelled with an escape is still the same name.
  check(`{${a}, "\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 1, "a");
  check('{"__metadata__":{"x":"1"},"__metadata__":{"x":"2"}}', 0, "__metadata__");
  // Equal keys inside nested objects or strings are not top-level duplicates.
  const nested = handBuilt(
    '{"__metadata__":{"a":"{\\"a\\":1,\\"a\\":2}","b":"a"},' + a + "}",
    [0, 0, 0, 0],
  );
  assertEquals(Object.keys(decodeSafetensors(nested, name).tensors), ["a"]);
  assertEquals(duplicateTopLevelKey('{"x":{"y":1,"y":2},"z":[{"x":1}]}'), null);
  assertEquals(duplicateTopLevelKey('{"x":1,"z":[{"x":1}],"x":2}'), "x");
});
