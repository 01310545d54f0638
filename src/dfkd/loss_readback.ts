/**
 * A loss read back without stalling its loop: the read of one reporting step's loss is started,
 * more steps are queued, and the value is awaited (and handed to `onValue`) at the next report
 * or when the loop ends. Awaiting a read at once costs a full adapter round trip; awaiting it
 * one report later finds it done.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";

/** A scalar loss in flight, tagged with where the loop was (`At`). */
export class LossReadback<At> {
  #read: (() => Promise<Float32Array>) | null = null;
  #at: At | null = null;
  /** The last value settled; NaN before the first. */
  value = NaN;

  /**
   * @param onValue called with each settled value (first element of the tensor) and its tag;
   *   it may throw (e.g. on a non-finite loss), and the loop stops there.
   */
  constructor(readonly onValue: (value: number, at: At) => void) {}

  /** Starts reading `loss` and disposes it, then settles the read before it, if any. */
  async start(loss: Tensor, at: At): Promise<void> {
    const read = loss.readLater();
    loss.dispose();
    await this.settle();
    this.#read = read;
    this.#at = at;
  }

  /** Awaits the read in flight, if any, and hands its value to `onValue`. */
  async settle(): Promise<void> {
    const read = this.#read;
    if (!read) return;
    this.#read = null;
    this.value = (await read())[0];
    this.onValue(this.value, this.#at!);
  }

  /** Frees a read in flight without handing it on (after an error elsewhere). */
  async drop(): Promise<void> {
    const read = this.#read;
    this.#read = null;
    await read?.().catch(() => {});
  }
}
