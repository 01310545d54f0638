/**
 * Progress bars (npm:cli-progress) on stderr: value/total, a loss, throughput and ETA.
 * When stderr is not a terminal (a log file, CI), cli-progress prints a plain line every 30 s
 * instead of redrawing a bar.
 *
 * Throughput and ETA count only the work done by this process: work reloaded from disk (a
 * resumed run's finished batches) moves the starting point instead of counting as instant
 * progress.
 *
 * @module
 */

import cliProgress from "cli-progress";

/** A progress bar with named payload fields shown after the bar. */
export interface Progress {
  /**
   * Shows `value` done. `payload.loss` may be a number or a numeric string; it is shown at a
   * fixed width ({@link formatLoss}); `payload.detail` (e.g. `epoch 3/10`) is shown after the
   * throughput. With `reloaded`, `value` is work loaded from disk rather
   * than done now: throughput and ETA are measured from there on.
   */
  update(value: number, payload?: Record<string, string | number>, reloaded?: boolean): void;
  /** Draws the bar a last time and releases the terminal line. */
  stop(): void;
}

/** Characters of {@link formatLoss}'s output. */
export const LOSS_WIDTH = 9;

/**
 * A loss at a fixed width ({@link LOSS_WIDTH}, right-aligned): five significant digits for
 * 0.001 ≤ |x| < 100,000 (and 0), exponent notation with three beyond (`1.69e+30`), `-` for a
 * missing or non-numeric value; NaN and infinities as such.
 */
export function formatLoss(x: number | string | undefined): string {
  const v = typeof x === "number" ? x : x === undefined || x.trim() === "" ? NaN : Number(x);
  let s: string;
  if (typeof x !== "number" && Number.isNaN(v)) s = "-";
  else if (!Number.isFinite(v)) s = String(v);
  else if (v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5)) s = v.toPrecision(5);
  else s = v.toExponential(2);
  return s.padStart(LOSS_WIDTH);
}

/** A duration in whole seconds as `42s`, `3m05s` or `2h07m`; `-` when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Seconds left to reach `total`, from the rate of the work done since the starting point
 * (`startValue` at `startTime`), both in seconds; NaN when no work has been done since.
 */
export function etaSeconds(
  value: number,
  total: number,
  startValue: number,
  startTime: number,
  now: number,
): number {
  const done = value - startValue;
  const elapsed = now - startTime;
  if (!(done > 0) || !(elapsed > 0)) return NaN;
  return Math.max(0, total - value) * elapsed / done;
}

/** Throughput since the starting point, e.g. `123 samples/s` or `0.52 steps/s`; `-` if unknown. */
export function formatRate(done: number, elapsed: number, unit: string): string {
  if (!(done > 0) || !(elapsed > 0)) return `- ${unit}/s`;
  const r = done / elapsed;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toPrecision(2)} ${unit}/s`;
}

/**
 * A bar labelled `label` counting to `total` `unit`s, showing the loss, the throughput and ETA.
 * `start` is work already done when the bar starts (not counted in throughput or ETA).
 */
export function progressBar(label: string, total: number, unit: string, start = 0): Progress {
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} ${unit} | loss {loss} | {rate}{detail} | ETA {eta}`,
    barsize: 24,
    hideCursor: false,
    fps: 5,
    noTTYOutput: !Deno.stderr.isTerminal(),
    notTTYSchedule: 30_000,
  }, cliProgress.Presets.shades_classic);
  const seconds = () => performance.now() / 1000;
  let startValue = start;
  let startTime = seconds();
  const timing = (value: number) => {
    const now = seconds();
    return {
      rate: formatRate(value - startValue, now - startTime, unit),
      eta: formatDuration(etaSeconds(value, total, startValue, startTime, now)),
    };
  };
  let detail = "";
  bar.start(total, start, { loss: formatLoss(undefined), detail, ...timing(start) });
  return {
    update: (value, payload = {}, reloaded = false) => {
      if (reloaded) {
        startValue = value;
        startTime = seconds();
      }
      const shown: Record<string, string | number> = { ...payload, ...timing(value) };
      if ("loss" in payload) shown.loss = formatLoss(payload.loss);
      if ("detail" in payload) detail = ` | ${payload.detail}`;
      shown.detail = detail;
      bar.update(value, shown);
    },
    stop: () => bar.stop(),
  };
}
