/**
 * A pool of storage buffers that reuses freed buffers by size class, so loops that create and
 * dispose tensors of the same shapes every step allocate no new GPU memory after the first step.
 *
 * Size classes are 2^k, 1.25·2^k, 1.5·2^k and 1.75·2^k bytes (at least 256), so at most 25% of a
 * buffer is slack. Every buffer has `STORAGE | COPY_SRC | COPY_DST` usage.
 *
 * @module
 */

/** Smallest buffer the pool hands out, in bytes. */
const MIN_BYTES = 256;

/** The size class (bytes) a request of `bytes` is rounded up to. */
function sizeClass(bytes: number): number {
  const b = Math.max(MIN_BYTES, Math.ceil(bytes));
  const p = 2 ** Math.floor(Math.log2(b));
  for (const f of [1, 1.25, 1.5, 1.75, 2]) {
    if (p * f >= b) return p * f;
  }
  return 2 * p;
}

/** Reuses GPU buffers by size class and counts live and pooled bytes. */
export class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  #live = 0;
  #pooled = 0;
  #created = 0;

  constructor(private readonly device: GPUDevice, private readonly maxBytes: number) {}

  /** Bytes held by buffers currently in use (acquired and not released). */
  get liveBytes(): number {
    return this.#live;
  }

  /** Bytes held by freed buffers waiting for reuse. */
  get pooledBytes(): number {
    return this.#pooled;
  }

  /** Number of GPU buffers ever created by this pool. */
  get createdBuffers(): number {
    return this.#created;
  }

  /**
   * A buffer of at least `bytes` bytes; its contents are undefined.
   *
   * @throws {RangeError} when `bytes` exceeds the adapter's storage-binding limit.
   */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBytes && bytes <= this.maxBytes) {
      return this.#track(this.#create(this.maxBytes));
    }
    if (bytes > this.maxBytes) {
      throw new RangeError(
        `A tensor of ${bytes} bytes exceeds this adapter's storage-buffer limit of ` +
          `${this.maxBytes} bytes; use a smaller batch size.`,
      );
    }
    const list = this.#free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.#pooled -= size;
      return this.#track(buf);
    }
    return this.#track(this.#create(size));
  }

  /** Returns a buffer to the pool for reuse. */
  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.#live -= size;
    this.#pooled += size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buf);
  }

  /** Destroys every pooled (free) buffer. Live buffers are untouched. */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
    this.#pooled = 0;
  }

  #create(size: number): GPUBuffer {
    this.#created++;
    return this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  #track(buf: GPUBuffer): GPUBuffer {
    this.#live += buf.size;
    return buf;
  }
}
