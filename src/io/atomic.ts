/**
 * Crash-safe file writes: a reader sees either the old file or the complete new one, never a
 * half-written checkpoint or image.
 *
 * @module
 */

import { DiskFullError } from "../errors.ts";

let counter = 0;

export { DiskFullError };

/** True for the operating system's "no space left" and "quota exceeded" errors. */
export function isDiskFull(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "ENOSPC" || code === "EDQUOT" ||
    (e instanceof Error && /\(os error (28|122)\)/.test(e.message));
}

/** `e` as a {@link DiskFullError} for `path` when the disk is full, else `e` itself. */
export function asWriteError(e: unknown, path: string): unknown {
  return isDiskFull(e) ? new DiskFullError(path) : e;
}

/**
 * Writes `data` to `path` atomically: the bytes go to `<path>.<pid>.<n>.tmp` in the same folder,
 * are flushed to disk (fsync), and the temporary file is renamed over `path` (rename within one
 * folder is atomic on POSIX file systems). On any failure the temporary file is removed and the
 * error is rethrown; an existing `path` is left untouched.
 *
 * Strings are written as UTF-8.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic.ts";
 * await writeFileAtomic("/tmp/example.json", JSON.stringify({ ok: true }));
 * ```
 *
 * @throws {Deno.errors.NotFound} if the folder of `path` does not exist.
 * @throws {Deno.errors.PermissionDenied} if the folder is not writable.
 * @throws {DiskFullError} if the disk is full.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${path}.${Deno.pid}.${counter++}.tmp`;
  let file: Deno.FsFile | null = null;
  try {
    file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
    file.close();
    file = null;
    await Deno.rename(tmp, path);
  } catch (err) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw asWriteError(err, path);
  }
}

/** Whether anything (file or folder) exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
