/**
 * Tests of dataset discovery and split loading: on synthetic IDX files in a temp
 * folder (including corrupt ones), and on the real MNIST / Fashion-MNIST files when the shared
 * data folder is present.
 */

import assert, { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import {
  CLASS_NAMES,
  DataError,
  type Dataset,
  type DatasetName,
  findDataDir,
  loadSplit,
  missingDataMessage,
} from "../src/data/datasets.ts";
import { loadIdxFile } from "../src/data/idx.ts";

// ---------------------------------------------------------------------------------------------
// Synthetic files

function idxBytes(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  out[2] = 0x08;
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

/** Pixel (r, c) of synthetic image i. */
const pixel = (i: number, r: number, c: number) => (i * 13 + r * 28 + c) % 256;

function syntheticImages(n: number, size = 28): Uint8Array {
  const d = new Uint8Array(n * size * size);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) d[(i * size + r) * size + c] = pixel(i, r, c);
    }
  }
  return d;
}

/** Writes a complete data folder (train: nTrain, test: nTest examples); gz for train only. */
async function writeDataDir(dir: string, nTrain = 7, nTest = 3): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const labels = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 3) % 10);
  await Deno.writeFile(
    `${dir}/train-images-idx3-ubyte.gz`,
    await gzip(idxBytes([nTrain, 28, 28], syntheticImages(nTrain))),
  );
  await Deno.writeFile(
    `${dir}/train-labels-idx1-ubyte.gz`,
    await gzip(idxBytes([nTrain], labels(nTrain))),
  );
  await Deno.writeFile(
    `${dir}/t10k-images-idx3-ubyte`,
    idxBytes([nTest, 28, 28], syntheticImages(nTest)),
  );
  await Deno.writeFile(`${dir}/t10k-labels-idx1-ubyte`, idxBytes([nTest], labels(nTest)));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dfkd-data-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function isDataError(...fragments: string[]) {
  return (err: unknown) => {
    assert(err instanceof DataError, `expected DataError, got ${err}`);
    for (const f of fragments) assert(err.message.includes(f), `no "${f}" in: ${err.message}`);
    return true;
  };
}

/** Checks the 32x32 padded layout of image i against the raw 28x28 bytes. */
function checkPadded(ds: Dataset, i: number, raw: (r: number, c: number) => number): void {
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const v = ds.images[i * 1024 + y * 32 + x];
      const inside = y >= 2 && y < 30 && x >= 2 && x < 30;
      const want = inside ? raw(y - 2, x - 2) / 255 : 0;
      assert(Math.abs(v - want) < 1e-7, `image ${i} (${y},${x}) = ${v}, expected ${want}`);
    }
  }
}

Deno.test("datasets: loadSplit pads 28x28 to 32x32 in [0,1], gz and plain files", async () => {
  await withTempDir(async (dir) => {
    await writeDataDir(dir);
    const train = await loadSplit(dir, "train");
    assertEquals(train.count, 7);
    assertEquals(train.images.length, 7 * 1024);
    assertEquals([...train.labels], [0, 3, 6, 9, 2, 5, 8]);
    for (let i = 0; i < 7; i++) checkPadded(train, i, (r, c) => pixel(i, r, c));
    const test = await loadSplit(dir, "test");
    assertEquals(test.count, 3);
    checkPadded(test, 2, (r, c) => pixel(2, r, c));
    const lim = await loadSplit(dir, "train", { limit: 4 });
    assertEquals(lim.count, 4);
    assertEquals(lim.images, train.images.subarray(0, 4 * 1024));
    assertEquals((await loadSplit(dir, "train", { limit: 100 })).count, 7);
    await rejects(() => loadSplit(dir, "train", { limit: -1 }), RangeError);
  });
});

Deno.test("datasets: corrupt or inconsistent files are DataErrors naming the file", async () => {
  await withTempDir(async (dir) => {
    await writeDataDir(dir);
    const img = `${dir}/t10k-images-idx3-ubyte`;
    const lab = `${dir}/t10k-labels-idx1-ubyte`;
    const good = await Deno.readFile(img);

    // Wrong magic.
    const bad = good.slice();
    bad[2] = 0x42;
    await Deno.writeFile(img, bad);
    await rejects(() => loadSplit(dir, "test"), isDataError(img, "0x42", "not supported"));
    bad[0] = 0x12;
    await Deno.writeFile(img, bad);
    await rejects(() => loadSplit(dir, "test"), isDataError(img, "not an IDX file"));

    // Truncated data.
    await Deno.writeFile(img, good.subarray(0, good.length - 100));
    await rejects(() => loadSplit(dir, "test"), isDataError(img, "truncated"));

    // Truncated gzip (train files are gzipped).
    const gz = `${dir}/train-images-idx3-ubyte.gz`;
    const gzGood = await Deno.readFile(gz);
    await Deno.writeFile(gz, gzGood.subarray(0, gzGood.length >> 1));
    await rejects(() => loadSplit(dir, "train"), isDataError(gz, "re-download"));
    await Deno.writeFile(gz, gzGood);

    // Image / label count mismatch.
    await Deno.writeFile(img, good);
    await Deno.writeFile(lab, idxBytes([4], Uint8Array.of(1, 2, 3, 4)));
    await rejects(() => loadSplit(dir, "test"), isDataError(img, lab, "3 images", "4 labels"));

    // Label out of range.
    await Deno.writeFile(lab, idxBytes([3], Uint8Array.of(1, 12, 3)));
    await rejects(() => loadSplit(dir, "test"), isDataError(lab, "label 12 at index 1"));

    // Images that are not 28x28.
    await Deno.writeFile(lab, idxBytes([3], Uint8Array.of(1, 2, 3)));
    await Deno.writeFile(img, idxBytes([3, 32, 32], syntheticImages(3, 32)));
    await rejects(() => loadSplit(dir, "test"), isDataError(img, "32x32", "28x28"));

    // Swapped files: a label file where images belong.
    await Deno.writeFile(img, idxBytes([3], Uint8Array.of(1, 2, 3)));
    await rejects(() => loadSplit(dir, "test"), isDataError(img, "label file"));

    // Missing file.
    await Deno.remove(img);
    await rejects(() => loadSplit(dir, "test"), isDataError("t10k-images-idx3-ubyte", "not found"));
  });
});

Deno.test("datasets: findDataDir honours explicit paths, DFKD_DATA_DIR and subfolders", async () => {
  await withTempDir(async (root) => {
    const ds: DatasetName = "fashion-mnist";
    await writeDataDir(`${root}/${ds}`);
    await Deno.mkdir(`${root}/partial`);
    await Deno.writeFile(`${root}/partial/train-images-idx3-ubyte`, new Uint8Array(1));

    assertEquals(findDataDir(ds, `${root}/${ds}`), `${root}/${ds}`);
    assertEquals(findDataDir(ds, root), `${root}/${ds}`); // explicit parent of <name>/
    // An explicit folder without the files is not silently replaced by another one.
    assertEquals(findDataDir(ds, `${root}/partial`), null);
    assertEquals(findDataDir(ds, `${root}/absent`), null);

    const saved = Deno.env.get("DFKD_DATA_DIR");
    try {
      Deno.env.set("DFKD_DATA_DIR", root); // holds <name>/
      assertEquals(findDataDir(ds), `${root}/${ds}`);
      Deno.env.set("DFKD_DATA_DIR", `${root}/${ds}`); // holds the files itself
      assertEquals(findDataDir(ds), `${root}/${ds}`);
    } finally {
      if (saved === undefined) Deno.env.delete("DFKD_DATA_DIR");
      else Deno.env.set("DFKD_DATA_DIR", saved);
    }

    const msg = missingDataMessage(ds, `${root}/absent`);
    for (
      const f of [
        "dataset-fashion-mnist",
        "--data DIR",
        `${root}/absent`,
        "t10k-labels-idx1-ubyte",
        "zalandoresearch/fashion-mnist",
      ]
    ) assert(msg.includes(f), `no "${f}" in:\n${msg}`);
    assert(missingDataMessage("mnist").includes("--data DIR"));
    assert(!missingDataMessage("mnist").includes("apt install"));
  });
});

// ---------------------------------------------------------------------------------------------
// Real data (the shared data folder next to the checkout)

const SHARED = new URL("../../shared/data", import.meta.url).pathname;

/** Known facts about each dataset's official files. */
const KNOWN: Record<
  DatasetName,
  { firstTrain: number[]; firstTest: number[]; testHist: number[] }
> = {
  "fashion-mnist": {
    firstTrain: [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
    firstTest: [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
    testHist: new Array(10).fill(1000),
  },
  mnist: {
    firstTrain: [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
    firstTest: [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
    testHist: [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
  },
};

/**
 * The folder of a dataset's real files: `../shared/data/<name>` beside the repository, else
 * `$DFKD_DATA_DIR/<name>`; null when neither holds the four IDX files.
 */
function realDataDir(name: DatasetName): string | null {
  const fromEnv = Deno.env.get("DFKD_DATA_DIR");
  return findDataDir(name, `${SHARED}/${name}`) ??
    (fromEnv ? findDataDir(name, `${fromEnv}/${name}`) : null);
}

for (const name of ["fashion-mnist", "mnist"] as const) {
  const dir = realDataDir(name);
  if (dir === null) {
    console.warn(
      `datasets_test: SKIPPING the real ${name} test: no ${name} IDX files found. To run it, put ` +
        `train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and ` +
        `t10k-labels-idx1-ubyte (each optionally .gz) in ${SHARED}/${name} (../shared/data/` +
        `${name} beside the repository), or set DFKD_DATA_DIR to a folder whose ${name}/ ` +
        `subfolder holds them.`,
    );
  }
  Deno.test({
    name: `datasets: real ${name} files load with the known labels and layout`,
    ignore: dir === null,
    async fn() {
      const known = KNOWN[name];
      const test = await loadSplit(dir!, "test");
      assertEquals(test.count, 10_000);
      assertEquals([...test.labels.subarray(0, 10)], known.firstTest);
      const hist = new Array(10).fill(0);
      for (const y of test.labels) hist[y]++;
      assertEquals(hist, known.testHist);
      let lo = Infinity, hi = -Infinity;
      for (const v of test.images) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      assertEquals([lo, hi], [0, 1]);
      const raw = await loadIdxFile(
        `${dir}/t10k-images-idx3-ubyte${
          (await Deno.stat(`${dir}/t10k-images-idx3-ubyte.gz`).catch(() => null)) ? ".gz" : ""
        }`,
      );
      for (const i of [0, 1234, 9999]) {
        checkPadded(test, i, (r, c) => raw.data[i * 784 + r * 28 + c]);
      }
      const train = await loadSplit(dir!, "train", { limit: 1000 });
      assertEquals(train.count, 1000);
      assertEquals([...train.labels.subarray(0, 10)], known.firstTrain);
      assertEquals(CLASS_NAMES[name].length, 10);
    },
  });
}
