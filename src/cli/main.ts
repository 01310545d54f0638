/**
 * Shared entry-point wrapper for the command-line tools: known failures (bad flags, bad files,
 * no adapter, numerical faults) print one line saying what was wrong and what to do, and exit
 * with code 2; a stack trace is printed only with `--verbose`.
 *
 * @module
 */

import { NoAdapterError } from "../gpu/device.ts";
import { CheckpointError } from "../nn/safetensors.ts";
import { DataError } from "../data/idx.ts";
import { UsageError } from "./flags.ts";

/** Errors the user can fix; printed as one line with exit code 2. */
export function isUserError(e: unknown): boolean {
  return e instanceof UsageError || e instanceof CheckpointError || e instanceof DataError ||
    e instanceof NoAdapterError || (e instanceof Error && e.name === "NumericalError") ||
    (e instanceof Error && e.name === "RunFolderError");
}

/** Runs `fn(args)`; maps thrown errors to a message and an exit code. */
export async function runMain(fn: (args: string[]) => Promise<number | void>): Promise<never> {
  const verbose = Deno.args.includes("--verbose");
  const args = Deno.args.filter((a) => a !== "--verbose");
  let code = 0;
  try {
    code = (await fn(args)) ?? 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`error: ${msg}`);
    if (verbose && e instanceof Error) console.error(e.stack);
    else if (!isUserError(e)) console.error("(run with --verbose for the stack trace)");
    code = isUserError(e) ? 2 : 1;
  }
  Deno.exit(code);
}
