/**
 * A GPU tensor: a shape over a pooled storage buffer of `f32` (or `u32` for indices), row-major,
 * NCHW for images.
 *
 * Tensors are freed with {@link Tensor.dispose}; {@link tidy} frees every tensor created inside a
 * function except those it returns, so long loops keep GPU memory flat. Reshapes are views that
 * share the buffer (reference counted).
 *
 * @module
 */

import {
  bufferPool,
  clearBuffer,
  readBuffer,
  readBufferLater,
  uploadBuffer,
} from "./gpu/runtime.ts";

/** Element type of a tensor. */
export type DType = "f32" | "u32";

/** A value derived from a tensor's contents (e.g. relaid-out weights), cached with it. */
export interface Derived<T> {
  /** The derived value. */
  value: T;
  /** Frees the value (called when the tensor is freed or its contents change). */
  dispose(): void;
}

class Storage {
  refs = 1;
  /** Bumped by every write to the contents ({@link Tensor.markModified}). */
  version = 0;
  derived: Map<string, { version: number; entry: Derived<unknown> }> | null = null;
  constructor(readonly buffer: GPUBuffer) {}
  dropDerived(): void {
    for (const { entry } of this.derived?.values() ?? []) entry.dispose();
    this.derived = null;
  }
  release(): void {
    if (--this.refs > 0) return;
    this.dropDerived();
    bufferPool().release(this.buffer);
  }
}

const scopes: Set<Tensor>[] = [];

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape [${shape}]`);
    n *= d;
  }
  return n;
}

/** An n-dimensional array on the GPU. */
export class Tensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly size: number;
  /** Element type. */
  readonly dtype: DType;
  /** Set on parameters and inputs the autograd tape should differentiate with respect to. */
  requiresGrad = false;
  #storage: Storage | null;

  private constructor(shape: readonly number[], storage: Storage, dtype: DType) {
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this.dtype = dtype;
    this.#storage = storage;
    scopes.at(-1)?.add(this);
  }

  /** The storage buffer (may be larger than `size * 4` bytes). @throws if disposed. */
  get buffer(): GPUBuffer {
    if (!this.#storage) throw new Error(`use of a disposed tensor of shape [${this.shape}]`);
    return this.#storage.buffer;
  }

  /** Whether {@link dispose} has been called. */
  get disposed(): boolean {
    return this.#storage === null;
  }

  /** Byte length of the data (`size * 4`). */
  get bytes(): number {
    return this.size * 4;
  }

  /** A tensor with undefined contents (for kernel outputs). */
  static empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const n = sizeOf(shape);
    return new Tensor(shape, new Storage(bufferPool().acquire(n * 4)), dtype);
  }

  /** A tensor of zeros (queued clear, no upload). */
  static zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = Tensor.empty(shape, dtype);
    clearBuffer(t.buffer, t.bytes);
    return t;
  }

  /**
   * A tensor holding `data`.
   *
   * @throws {RangeError} when `data.length` differs from the shape's element count.
   */
  static from(
    data: Float32Array | Uint32Array | readonly number[],
    shape: readonly number[] = [data.length],
  ): Tensor {
    const n = sizeOf(shape);
    if (data.length !== n) {
      throw new RangeError(`${data.length} values do not fill shape [${shape}] (${n} elements)`);
    }
    const dtype: DType = data instanceof Uint32Array ? "u32" : "f32";
    const arr = data instanceof Float32Array || data instanceof Uint32Array
      ? data
      : Float32Array.from(data);
    const t = Tensor.empty(shape, dtype);
    if (n > 0) uploadBuffer(t.buffer, arr);
    return t;
  }

  /** A scalar tensor of shape `[1]`. */
  static scalar(v: number): Tensor {
    return Tensor.from([v], [1]);
  }

  /** A view with another shape of the same element count, sharing the buffer (no copy). */
  reshape(shape: readonly number[]): Tensor {
    const s = [...shape];
    const hole = s.indexOf(-1);
    if (hole >= 0) s[hole] = this.size / sizeOf(s.filter((_, i) => i !== hole));
    if (sizeOf(s) !== this.size) {
      throw new RangeError(`cannot reshape [${this.shape}] to [${shape}]`);
    }
    const storage = this.#storage;
    if (!storage) throw new Error("reshape of a disposed tensor");
    storage.refs++;
    const t = new Tensor(s, storage, this.dtype);
    t.requiresGrad = this.requiresGrad;
    return t;
  }

  /**
   * Counts the writes to the contents (shared by reshaped views): ops that update a tensor in
   * place call {@link markModified}, so values derived from it can tell that they are stale.
   */
  get version(): number {
    if (!this.#storage) throw new Error(`use of a disposed tensor of shape [${this.shape}]`);
    return this.#storage.version;
  }

  /** Records that the contents changed (in-place ops call this); drops every derived value. */
  markModified(): void {
    const s = this.#storage;
    if (!s) return;
    s.version++;
    s.dropDerived();
  }

  /**
   * A value derived from the contents, made by `make` on first use and kept until the contents
   * change ({@link markModified}) or the tensor is freed; `key` names the kind of value.
   * Outlives {@link tidy} scopes: the tensor owns it.
   */
  derived<T>(key: string, make: () => Derived<T>): T {
    const s = this.#storage;
    if (!s) throw new Error(`use of a disposed tensor of shape [${this.shape}]`);
    s.derived ??= new Map();
    const hit = s.derived.get(key);
    if (hit && hit.version === s.version) return hit.entry.value as T;
    hit?.entry.dispose();
    const entry = make();
    s.derived.set(key, { version: s.version, entry });
    return entry.value;
  }

  /** Reads the data back as `Float32Array` (submits queued work; one GPU round trip). */
  async read(): Promise<Float32Array> {
    return new Float32Array(await readBuffer(this.buffer, this.bytes));
  }

  /**
   * Starts reading the data back and returns a function that awaits it (see `readBufferLater`):
   * later work queued in between overlaps the round trip. Call it once.
   */
  readLater(): () => Promise<Float32Array> {
    const data = readBufferLater(this.buffer, this.bytes);
    return async () => new Float32Array(await data());
  }

  /** Reads the data back as `Uint32Array`. */
  async readU32(): Promise<Uint32Array> {
    return new Uint32Array(await readBuffer(this.buffer, this.bytes));
  }

  /** Overwrites the contents with `data` (same element count). */
  write(data: Float32Array | Uint32Array): void {
    if (data.length !== this.size) {
      throw new RangeError(`${data.length} values do not fill shape [${this.shape}]`);
    }
    uploadBuffer(this.buffer, data);
    this.markModified();
  }

  /** Returns the buffer to the pool. Idempotent. */
  dispose(): void {
    if (!this.#storage) return;
    this.#storage.release();
    this.#storage = null;
    for (const s of scopes) s.delete(this);
  }

  /** A short description, e.g. `"Tensor[2×3]"`. */
  toString(): string {
    return `Tensor[${this.shape.join("×")}]`;
  }
}

/** Anything made of tensors that {@link tidy} can keep. */
export type TensorTree =
  | Tensor
  | void
  | undefined
  | null
  | number
  | string
  | boolean
  | readonly TensorTree[]
  | { readonly [k: string]: TensorTree };

function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) { for (const x of v) collect(x, out); }
  else if (v && typeof v === "object") { for (const x of Object.values(v)) collect(x, out); }
}

/**
 * Runs `fn` and disposes every tensor created during it, except the tensors found in its result
 * (recursively in arrays and plain objects) and those passed to {@link keep}.
 * Kept tensors move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keepSet = new Set<Tensor>();
  collect(result, keepSet);
  for (const t of scope) {
    if (keepSet.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}

/** Removes `t` from every open {@link tidy} scope so it outlives them. Returns `t`. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/** Disposes every tensor in a tree of tensors. */
export function disposeAll(tree: TensorTree): void {
  const s = new Set<Tensor>();
  collect(tree, s);
  for (const t of s) t.dispose();
}
