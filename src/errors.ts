/**
 * Every error this package throws on purpose, in one hierarchy: each is a {@link DfkdError} whose
 * message names the file, setting or value at fault and says what to do, so that a caller (the
 * command-line tools print it as one line and exit with code 2) can tell a fault of the input from
 * a bug by `instanceof DfkdError` alone. Messages speak of settings by their configuration keys
 * (`synthesis.lr`); the command-line tools show the matching flag names instead.
 *
 * {@link SettingError} is a `RangeError` (a setting outside its range), not a `DfkdError` subclass;
 * {@link isDfkdFault} accepts both.
 *
 * @module
 */

/** The base class of the package's errors. */
export class DfkdError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong and what to do.
   * @param resumeDir the run folder whose finished work is kept and can be resumed, if any.
   */
  constructor(message: string, readonly resumeDir?: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A setting outside its allowed range, type or choices; `key` is its configuration key. */
export class SettingError extends RangeError {
  /**
   * Creates the error.
   * @param key the setting's configuration key, e.g. `"synthesis.sigma"`.
   * @param message the whole message, naming the key, the value and what is allowed.
   */
  constructor(readonly key: string, message: string) {
    super(message);
    this.name = "SettingError";
  }
}

/** A checkpoint that cannot be read, written or used; the message names the file. */
export class CheckpointError extends DfkdError {}

/** A data file that is missing, corrupt, or not what was expected; the message names the file. */
export class DataError extends DfkdError {}

/** An output folder that cannot be used for a run (a finished run, a bad run.json, a lock). */
export class RunFolderError extends DfkdError {}

/** A loss that became NaN or infinite; the message names where and which setting to lower. */
export class NumericalError extends DfkdError {}

/** The GPU device was lost during a run; finished work is kept in `resumeDir`. */
export class DeviceLostError extends DfkdError {}

/** No WebGPU adapter on this machine; the message says what to install. */
export class NoAdapterError extends DfkdError {
  /** Creates the error with the installation advice. */
  constructor() {
    super(
      "No WebGPU adapter found. Install a GPU driver with Vulkan support and the Vulkan loader " +
        "(an NVIDIA driver's Vulkan part also needs libglvnd; Debian/Ubuntu: `apt-get install " +
        "libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libgles2 libopengl0`), or on a machine " +
        "without a GPU install Mesa's software rasteriser (`apt-get install " +
        "mesa-vulkan-drivers libgl1-mesa-dri`), then run again.",
    );
  }
}

/**
 * A file that could not be written because its disk (or the user's quota) is full. The message
 * names the file and the folder to free space in; whatever was written before is untouched.
 */
export class DiskFullError extends DfkdError {
  /**
   * Creates the error.
   * @param path the file that could not be written.
   * @param resumeDir the run folder whose finished work is kept, if any.
   */
  constructor(readonly path: string, resumeDir?: string) {
    const i = path.lastIndexOf("/");
    const dir = i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
    super(
      `cannot write ${path}: no space left on the disk; free space where ${dir} lives`,
      resumeDir,
    );
  }
}

/** Bad command-line input (an unknown flag, a bad value); raised by the command-line tools. */
export class UsageError extends DfkdError {}

/** Whether `e` is a fault of the input that the user can act on (not a bug). */
export function isDfkdFault(e: unknown): boolean {
  return e instanceof DfkdError || e instanceof SettingError;
}
