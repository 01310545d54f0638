/**
 * The MNIST-family datasets (Fashion-MNIST, MNIST): locating them on disk and loading a split as
 * padded float images.
 *
 * Images become `[N, 1, 32, 32]` f32 in [0, 1]: the 28×28 bytes divided by 255 and zero-padded by
 * 2 pixels on every side, the input size of LeNet-5 and of the synthesiser's output.
 *
 * @module
 */

import { DataError, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, loadIdxFile } from "./idx.ts";

export { DataError };

/** A dataset this tool knows how to find and load. */
export type DatasetName = "fashion-mnist" | "mnist";

/** Every {@link DatasetName}, for argument validation. */
export const DATASET_NAMES: readonly DatasetName[] = ["fashion-mnist", "mnist"];

/** Spellings of each dataset name that checkpoints and users write, lower-cased, without `-_ .`. */
const DATASET_ALIASES: Readonly<Record<string, DatasetName>> = {
  fashionmnist: "fashion-mnist",
  fmnist: "fashion-mnist",
  fashion: "fashion-mnist",
  mnist: "mnist",
};

/**
 * The {@link DatasetName} for a usual spelling (`fashion-mnist`, `FashionMNIST`, `fashion_mnist`,
 * `fmnist`, `MNIST`, …): case, `-`, `_`, `.` and spaces are ignored.
 *
 * @returns the name, or null for a dataset this tool does not know.
 */
export function parseDatasetName(name: string): DatasetName | null {
  return DATASET_ALIASES[name.toLowerCase().replace(/[-_. ]/g, "")] ?? null;
}

/** One split of a dataset, in memory. */
export interface Dataset {
  /** `[N, 1, 32, 32]` in [0, 1]: 28×28 zero-padded by 2 pixels on each side. */
  images: Float32Array;
  /** `[N]` class ids in 0..9. */
  labels: Uint32Array;
  /** N. */
  count: number;
}

/** Height and width of a loaded image (28 + 2·2). */
export const IMAGE_SIZE = 32;
/** Side of the stored images. */
export const RAW_SIZE = 28;
/** Zero padding added on each side. */
export const PAD = 2;
/** Number of classes in both datasets. */
export const NUM_CLASSES = 10;

/** Class names by id, for reports and image captions. */
export const CLASS_NAMES: Readonly<Record<DatasetName, readonly string[]>> = {
  "fashion-mnist": [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
  ],
  mnist: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
};

const OFFICIAL_PAGE: Record<DatasetName, string> = {
  "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion/)",
  mnist: "https://yann.lecun.com/exdb/mnist/ (or any mirror of the four IDX files)",
};

const DEBIAN_PACKAGE: Partial<Record<DatasetName, string>> = {
  "fashion-mnist": "dataset-fashion-mnist",
};

/** A split of a dataset: `"train"` (files `train-*`) or `"test"` (files `t10k-*`). */
export type Split = "train" | "test";
type Kind = "images" | "labels";

/** File stem of a split and kind, e.g. `t10k-images-idx3-ubyte`. */
function stem(split: Split, kind: Kind): string {
  const prefix = split === "train" ? "train" : "t10k";
  return kind === "images" ? `${prefix}-images-idx3-ubyte` : `${prefix}-labels-idx1-ubyte`;
}

/** The four file stems a data folder must hold. */
const ALL_FILES: [Split, Kind][] = [
  ["train", "images"],
  ["train", "labels"],
  ["test", "images"],
  ["test", "labels"],
];

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/**
 * The path of one file in `dir`, trying `<stem>.gz`, `<stem>`, then the dotted variant
 * (`train-images.idx3-ubyte`) some archives unpack to; null if none exists.
 */
function resolveFile(dir: string, split: Split, kind: Kind): string | null {
  const s = stem(split, kind);
  const dotted = s.replace(/-(idx\d)-/, ".$1-");
  for (const name of [`${s}.gz`, s, `${dotted}.gz`, dotted]) {
    const p = join(dir, name);
    if (isFile(p)) return p;
  }
  return null;
}

function holdsAllFiles(dir: string): boolean {
  return ALL_FILES.every(([split, kind]) => resolveFile(dir, split, kind) !== null);
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: skip this source
  }
}

/**
 * The folders {@link findDataDir} inspects, in order. With an explicit path only that path and
 * its `<dataset>` subfolder are candidates (an explicit choice is never silently replaced).
 */
export function dataDirCandidates(dataset: DatasetName, explicit?: string): string[] {
  if (explicit !== undefined && explicit !== "") return [explicit, join(explicit, dataset)];
  const out: string[] = [];
  const fromEnv = env("DFKD_DATA_DIR");
  if (fromEnv) {
    const sub = join(fromEnv, dataset);
    out.push(isDir(sub) ? sub : fromEnv);
  }
  out.push(`/usr/share/datasets/${dataset}`);
  const home = env("HOME");
  if (home) out.push(`${home}/.cache/dfkd/${dataset}`);
  out.push(`./data/${dataset}`);
  return out;
}

/**
 * Finds the folder holding the four IDX files of `dataset` (`train-images-idx3-ubyte`,
 * `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain or
 * `.gz`).
 *
 * Looks, in order, at: `explicit` (or its `<dataset>` subfolder) when given — and then nowhere
 * else; otherwise `$DFKD_DATA_DIR/<dataset>` if that subfolder exists, else `$DFKD_DATA_DIR`;
 * `/usr/share/datasets/<dataset>` (where Debian's `dataset-fashion-mnist` installs it);
 * `~/.cache/dfkd/<dataset>`; `./data/<dataset>`.
 *
 * @returns the first folder with all four files, or null (then show {@link missingDataMessage}).
 */
export function findDataDir(dataset: DatasetName, explicit?: string): string | null {
  for (const dir of dataDirCandidates(dataset, explicit)) if (holdsAllFiles(dir)) return dir;
  return null;
}

/**
 * A message explaining how to obtain `dataset` and where it was looked for.
 * @param explicit the `--data` folder the user gave, if any.
 */
export function missingDataMessage(dataset: DatasetName, explicit?: string): string {
  const files = ALL_FILES.map(([s, k]) => stem(s, k)).join(", ");
  const lines = [
    `Could not find the ${dataset} dataset. Looked in:`,
    ...dataDirCandidates(dataset, explicit).map((d) => `  ${d}`),
    `A data folder must hold the four IDX files ${files} (each may be gzipped, .gz).`,
    "To get them:",
  ];
  const pkg = DEBIAN_PACKAGE[dataset];
  if (pkg) {
    lines.push(
      `  - on Debian/Ubuntu: sudo apt install ${pkg}   (installs /usr/share/datasets/${dataset})`,
    );
  }
  lines.push(
    `  - or download the four files from ${OFFICIAL_PAGE[dataset]} into a folder and pass ` +
      `--data DIR (or set DFKD_DATA_DIR).`,
  );
  return lines.join("\n");
}

/**
 * Which of the two datasets `set` looks like, by its mean pixel value over the 28×28 image area:
 * MNIST's digits cover little of the frame (mean ≈ 0.13), Fashion-MNIST's garments much more
 * (≈ 0.29); the threshold is 0.2. A cheap check that a test set belongs to the teacher's dataset.
 *
 * @returns the name, or null for fewer than 100 images (too few to tell).
 */
export function guessDataset(set: Dataset): DatasetName | null {
  if (set.count < 100) return null;
  let sum = 0;
  for (let i = 0; i < set.count * IMAGE_SIZE * IMAGE_SIZE; i++) sum += set.images[i];
  const mean = sum / Math.max(1, set.count * RAW_SIZE * RAW_SIZE);
  return mean < 0.2 ? "mnist" : "fashion-mnist";
}

/**
 * Loads one split of a dataset from `dir`.
 *
 * @param dir folder holding the IDX files (see {@link findDataDir}).
 * @param split `"train"` (files `train-*`) or `"test"` (files `t10k-*`).
 * @param opts.limit keep only the first `limit` examples (the files are still fully validated).
 * @returns images `[N, 1, 32, 32]` in [0, 1] and labels `[N]`.
 * @throws {DataError} if a file is missing or corrupt, the files hold no images, the images are
 *   not 28×28, the image and label counts differ, or a label is outside 0..9.
 * @throws {RangeError} if `limit` is not a non-negative integer.
 */
export async function loadSplit(
  dir: string,
  split: Split,
  opts: { limit?: number } = {},
): Promise<Dataset> {
  const { limit } = opts;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new RangeError(`loadSplit: limit must be a non-negative integer, got ${limit}`);
  }
  const paths = (["images", "labels"] as const).map((kind) => {
    const p = resolveFile(dir, split, kind);
    if (p === null) {
      throw new DataError(
        `${join(dir, stem(split, kind))}(.gz): file not found. The data folder must hold the ` +
          `${split} ${kind} in MNIST IDX format; pass the right folder with --data DIR.`,
      );
    }
    return p;
  });
  const [img, lab] = await Promise.all(paths.map((p) => loadIdxFile(p)));
  const [imgPath, labPath] = paths;
  const magicOf = (dims: number[]) => 0x800 + dims.length;
  if (magicOf(img.dims) !== IDX_IMAGES_MAGIC) {
    throw new DataError(
      `${imgPath}: expected an image file (magic 0x00000803, 3 dimensions) but it has ` +
        `${img.dims.length} dimension(s) [${img.dims.join(", ")}]; is it a label file?`,
    );
  }
  if (magicOf(lab.dims) !== IDX_LABELS_MAGIC) {
    throw new DataError(
      `${labPath}: expected a label file (magic 0x00000801, 1 dimension) but it has ` +
        `${lab.dims.length} dimension(s) [${lab.dims.join(", ")}]; is it an image file?`,
    );
  }
  const [n, rows, cols] = img.dims;
  if (rows !== RAW_SIZE || cols !== RAW_SIZE) {
    throw new DataError(
      `${imgPath}: images are ${rows}x${cols}; this tool expects ${RAW_SIZE}x${RAW_SIZE} ` +
        `(MNIST / Fashion-MNIST).`,
    );
  }
  if (lab.dims[0] !== n) {
    throw new DataError(
      `${imgPath} holds ${n} images but ${labPath} holds ${lab.dims[0]} labels; the two files ` +
        `come from different splits or versions: re-download both.`,
    );
  }
  if (n === 0) {
    throw new DataError(
      `${imgPath} and ${labPath} are valid IDX files but hold 0 images: there is nothing to ` +
        `${split === "test" ? "measure accuracy on" : "train on"}; re-download the ${split} files.`,
    );
  }
  const count = limit === undefined ? n : Math.min(limit, n);
  for (let i = 0; i < n; i++) {
    const y = lab.data[i];
    if (y >= NUM_CLASSES) {
      throw new DataError(
        `${labPath}: label ${y} at index ${i} is outside 0..${NUM_CLASSES - 1}; the file is ` +
          `corrupt or not an MNIST-family label file.`,
      );
    }
  }
  const labels = Uint32Array.from(lab.data.subarray(0, count));
  const images = new Float32Array(count * IMAGE_SIZE * IMAGE_SIZE);
  const src = img.data;
  const inv = 1 / 255;
  for (let i = 0; i < count; i++) {
    const s0 = i * RAW_SIZE * RAW_SIZE;
    const d0 = i * IMAGE_SIZE * IMAGE_SIZE + PAD * IMAGE_SIZE + PAD;
    for (let r = 0; r < RAW_SIZE; r++) {
      const s = s0 + r * RAW_SIZE;
      const d = d0 + r * IMAGE_SIZE;
      for (let c = 0; c < RAW_SIZE; c++) images[d + c] = src[s + c] * inv;
    }
  }
  return { images, labels, count };
}
