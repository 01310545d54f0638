/**
 * Shared entry-point wrapper for the command-line tools: known failures (bad flags, bad files,
 * no adapter, numerical faults, a lost device) print one line saying what was wrong and what to
 * do, and exit with code 2; a stack trace is printed only with `--verbose`. Anything else is a
 * bug: one line, a pointer to `--verbose`, and exit code 1.
 *
 * Environment: `DFKD_FORCE_NO_ADAPTER=1` makes {@link initGpuForCli} behave as on a machine
 * without any WebGPU adapter, so that the message and exit code of that case can be tested.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type GpuContext, NoAdapterError } from "../gpu/device.ts";
import { initGpu } from "../gpu/runtime.ts";
import { isDfkdFault } from "../errors.ts";
import {
  dataDirCandidates,
  type DatasetName,
  findDataDir,
  guessDataset,
  loadSplit,
} from "../data/datasets.ts";
import { UsageError } from "./flags.ts";

/** Errors the user can fix; printed as one line with exit code 2. */
export function isUserError(e: unknown): boolean {
  return isDfkdFault(e);
}

/**
 * {@link initGpu} for the command-line tools. Set `DFKD_FORCE_NO_ADAPTER=1` to simulate a machine
 * without a WebGPU adapter (for tests of the error message).
 *
 * @throws {NoAdapterError} when no adapter is available (or the variable is set).
 */
export function initGpuForCli(): Promise<GpuContext> {
  let forced = false;
  try {
    forced = Deno.env.get("DFKD_FORCE_NO_ADAPTER") === "1";
  } catch { /* no --allow-env: nothing forced */ }
  if (forced) return Promise.reject(new NoAdapterError());
  return initGpu();
}

/**
 * The one-line error for a dataset that is not where the user pointed (`explicit`, the --data
 * flag) or in any standard place.
 */
export function dataNotFound(dataset: DatasetName, explicit?: string): UsageError {
  const files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and " +
    "t10k-labels-idx1-ubyte (each optionally .gz)";
  if (explicit !== undefined) {
    return new UsageError(
      `--data ${explicit}: the ${dataset} files are not there (a data folder holds ${files}); ` +
        `pass the folder that holds them`,
    );
  }
  const get = dataset === "fashion-mnist"
    ? ", or install it (Debian/Ubuntu: apt install dataset-fashion-mnist)"
    : "";
  return new UsageError(
    `no ${dataset} data found (looked in ${dataDirCandidates(dataset).join(", ")}); pass ` +
      `--data DIR, a folder holding ${files}, or set DFKD_DATA_DIR to one${get}`,
  );
}

/** The repository root, where `deno task` runs its commands. */
const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

/**
 * `deno task` runs every command in the project root and names the folder the user ran it from in
 * `INIT_CWD`; moving back there makes relative paths (`--out myrun` from a subfolder) mean what
 * the user meant. Only done when the process was started in the project root, so that a caller
 * that sets its own working folder keeps it.
 */
function enterUserFolder(): void {
  let init: string | undefined;
  try {
    init = Deno.env.get("INIT_CWD");
  } catch {
    return; // no --allow-env
  }
  if (!init) return;
  try {
    if (Deno.realPathSync(Deno.cwd()) !== Deno.realPathSync(PROJECT_ROOT)) return;
    Deno.chdir(init);
  } catch { /* the folder is gone or unreadable: stay */ }
}

/**
 * Runs `fn(args)`; maps thrown errors to a message and an exit code. `render` may rewrite an
 * error first (e.g. to show setting keys as the command's flags).
 */
export async function runMain(
  fn: (args: string[]) => Promise<number | void>,
  render: (e: unknown) => unknown = (e) => e,
): Promise<never> {
  enterUserFolder();
  const verbose = Deno.args.includes("--verbose");
  const args = Deno.args.filter((a) => a !== "--verbose");
  let code = 0;
  try {
    code = (await fn(args)) ?? 0;
  } catch (thrown) {
    const e = render(thrown);
    const user = isUserError(e);
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`error: ${user ? msg.replace(/\s*\n\s*/g, " ") : msg}`);
    if (verbose && e instanceof Error) console.error(e.stack);
    else if (!user) console.error("(run with --verbose for the stack trace)");
    code = user ? 2 : 1;
  }
  Deno.exit(code);
}

/**
 * For a checkpoint that names no dataset (a plain PyTorch state_dict): the dataset the `--data`
 * test set looks like (its mean pixel value), said on stderr; null without `--data` or when it
 * holds no test set.
 */
export async function datasetOfTestSet(data: string | undefined): Promise<DatasetName | null> {
  if (data === undefined) return null;
  const dir = findDataDir("fashion-mnist", data) ?? findDataDir("mnist", data);
  if (!dir) return null;
  const looks = guessDataset(await loadSplit(dir, "test"));
  if (looks) {
    console.error(
      `the checkpoint names no dataset; the test set in ${dir} looks like ${looks}, ` +
        `so it is read as a ${looks} classifier (pass --dataset to choose)`,
    );
  }
  return looks;
}
