/**
 * Writes the slice of the real Fashion-MNIST test set that the browser demo measures its student
 * on: the first `--count` images of `t10k-*` (default 300), padded to 32×32 and scaled to [0, 1]
 * exactly as {@link loadSplit} does, as a safetensors file with `images` `[count, 1, 32, 32]` f32
 * and `labels` `[count]` f32 (class ids 0..9), gzip-compressed (1.2 MB → 0.2 MB); the page
 * inflates it with a `DecompressionStream` and decodes it with `decodeSafetensors`.
 *
 * Fashion-MNIST is © 2017 Zalando SE, MIT licence (see `DATA.md` beside this file).
 *
 * Run: `deno run -R -W examples/browser/make_test_slice.ts [--data DIR] [--count N] [--out FILE]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import {
  DataError,
  encodeSafetensors,
  findDataDir,
  loadSplit,
  missingDataMessage,
} from "../../mod.ts";

/** Where the page expects the slice. */
export const SLICE_PATH = fileURLToPath(
  new URL("./fashion-mnist-test-300.safetensors.gz", import.meta.url),
);

/**
 * The safetensors bytes (uncompressed) of the first `count` test images of the Fashion-MNIST
 * folder `dir`.
 *
 * @throws {DataError} when the IDX files are missing or corrupt (see {@link loadSplit}).
 */
export async function testSliceBytes(dir: string, count: number): Promise<Uint8Array> {
  const { images, labels, count: n } = await loadSplit(dir, "test", { limit: count });
  return encodeSafetensors({
    images: { shape: [n, 1, 32, 32], data: images },
    labels: { shape: [n], data: Float32Array.from(labels) },
  }, {
    dataset: "fashion-mnist",
    split: "test",
    first: String(n),
    licence: "MIT, Copyright 2017 Zalando SE (Fashion-MNIST, Xiao, Rasul and Vollgraf 2017)",
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { data: { type: "string" }, count: { type: "string" }, out: { type: "string" } },
  });
  const dir = findDataDir("fashion-mnist", values.data);
  if (!dir) throw new DataError(missingDataMessage("fashion-mnist", values.data));
  const out = values.out ?? SLICE_PATH;
  const raw = await testSliceBytes(dir, Number(values.count ?? 300));
  const gz = new Blob([raw as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  const bytes = new Uint8Array(await new Response(gz).arrayBuffer());
  await Deno.writeFile(out, bytes);
  console.log(`wrote ${out} (${bytes.length} bytes)`);
}
