/**
 * Progress bars (npm:cli-progress) on stderr: value/total, a loss, throughput and ETA.
 * When stderr is not a terminal (a log file, CI), cli-progress prints a plain line every 30 s
 * instead of redrawing a bar.
 *
 * @module
 */

import cliProgress from "cli-progress";

/** A progress bar with named payload fields shown after the bar. */
export interface Progress {
  update(value: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

/** A bar labelled `label` counting to `total` `unit`s, showing `loss` and ETA. */
export function progressBar(label: string, total: number, unit: string, start = 0): Progress {
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} ${unit} | loss {loss} | {rate} | ETA {eta_formatted}`,
    barsize: 24,
    hideCursor: false,
    etaBuffer: 50,
    fps: 5,
    noTTYOutput: !Deno.stderr.isTerminal(),
    notTTYSchedule: 30_000,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, start, { loss: "-", rate: "" });
  return {
    update: (value, payload) => bar.update(value, payload),
    stop: () => bar.stop(),
  };
}
