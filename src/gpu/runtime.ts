/**
 * The GPU runtime: pipeline cache, buffer pool, batched dispatch into one command encoder,
 * uploads and explicit readback.
 *
 * Work is queued, not awaited: every {@link dispatch} is recorded into a shared compute pass and
 * only submitted by {@link flush} (or automatically when the uniform ring is full). Only
 * {@link readBuffer} waits for the GPU. Uploads flush first so that a pooled buffer that is still
 * read by queued work is never overwritten early.
 *
 * Kernel conventions (every file in `kernels/`):
 * - binding 0 of group 0 is a uniform struct of 4-byte `u32`/`f32` fields; the kernel's
 *   {@link Kernel.uniforms} names the struct and lists its fields in order (declared once, beside
 *   the op), the layout is checked against the WGSL struct when the pipeline is first built, and
 *   every dispatch passes the values by field name;
 * - kernels are specialised with `override` constants ({@link Kernel.constants}), never by
 *   editing their source text;
 * - bindings 1..n are the storage buffers in the order passed to {@link dispatch};
 * - every declared binding must be used (pipelines use the automatic layout);
 * - buffers come from a pool and may be larger than the tensor: never use `arrayLength`;
 * - a 1-D dispatch of more than 65,535 workgroups is split over y: the kernel computes its
 *   workgroup index as `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups) nwg`).
 *
 * @module
 */

import { getGpu, type GpuContext } from "./device.ts";
import { BufferPool } from "./pool.ts";
import { checkUniformLayout, encodeUniforms, type UniformLayout } from "./_uniforms.ts";

export {
  type UniformField,
  type UniformLayout,
  uniformLayout,
  type UniformType,
} from "./_uniforms.ts";

/**
 * A compute kernel: WGSL source, entry point, pipeline-overridable constants and the layout of
 * its binding-0 uniform struct (whose field names `F` every dispatch supplies).
 */
export interface Kernel<F extends string = string> {
  /** Unique name, used in the pipeline cache key and in error messages. */
  name: string;
  /** WGSL source. */
  code: string;
  /** Entry point, default `"main"`. */
  entryPoint?: string;
  /** Values for `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number>;
  /** The binding-0 uniform struct, checked against the WGSL on the first pipeline build. */
  uniforms: UniformLayout<F>;
}

/** One queued dispatch, as recorded by {@link startDispatchTrace} (for profiling). */
export interface DispatchRecord {
  kernel: Kernel;
  buffers: readonly GPUBuffer[];
  uniforms: Readonly<Record<string, number>>;
  workgroups: number | readonly [number, number, number];
}

/** Counters for benchmarks and tests. */
export interface RuntimeStats {
  dispatches: number;
  submits: number;
  readbacks: number;
  /** Milliseconds spent awaiting readbacks. */
  readbackMs: number;
}

const SLOT = 256; // minUniformBufferOffsetAlignment
const SLOTS = 512;

class Runtime {
  readonly pool: BufferPool;
  readonly stats: RuntimeStats = { dispatches: 0, submits: 0, readbacks: 0, readbackMs: 0 };
  #pipelines = new Map<string, GPUComputePipeline>();
  /** The kernel sources each uniform layout has been checked against. */
  #checked = new WeakMap<UniformLayout, Set<string>>();
  #modules = new Map<string, GPUShaderModule>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #uniforms: GPUBuffer;
  #uniformData = new ArrayBuffer(SLOT * SLOTS);
  #slot = 0;
  /** Dispatches recorded since {@link startDispatchTrace}, or null when not tracing. */
  trace: DispatchRecord[] | null = null;

  constructor(readonly ctx: GpuContext) {
    this.pool = new BufferPool(ctx.device, ctx.maxStorageBufferBindingSize);
    this.#uniforms = ctx.device.createBuffer({
      size: SLOT * SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  get device(): GPUDevice {
    return this.ctx.device;
  }

  /** Checks `k.uniforms` against the WGSL once per layout and source. */
  #checkUniforms(k: Kernel): void {
    let sources = this.#checked.get(k.uniforms);
    if (sources?.has(k.code)) return;
    checkUniformLayout(k.name, k.code, k.uniforms);
    if (!sources) this.#checked.set(k.uniforms, sources = new Set());
    sources.add(k.code);
  }

  pipeline(k: Kernel): GPUComputePipeline {
    this.#checkUniforms(k);
    const entryPoint = k.entryPoint ?? "main";
    const key = `${k.name}|${entryPoint}|${k.constants ? JSON.stringify(k.constants) : ""}`;
    let p = this.#pipelines.get(key);
    if (!p) {
      let module = this.#modules.get(k.code);
      if (!module) {
        module = this.device.createShaderModule({ label: k.name, code: k.code });
        this.#modules.set(k.code, module);
      }
      p = this.device.createComputePipeline({
        label: key,
        layout: "auto",
        compute: { module, entryPoint, constants: k.constants },
      });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  #encoderNow(): GPUCommandEncoder {
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  dispatch(
    k: Kernel,
    buffers: readonly GPUBuffer[],
    uniforms: Readonly<Record<string, number>>,
    workgroups: number | readonly [number, number, number],
  ): void {
    if (this.#slot === SLOTS) this.flush();
    if (k.uniforms.fields.length * 4 > SLOT) {
      throw new RangeError(`kernel ${k.name}: more than ${SLOT / 4} uniform fields`);
    }
    const pipeline = this.pipeline(k);
    const off = this.#slot * SLOT;
    encodeUniforms(k.name, k.uniforms, uniforms, new DataView(this.#uniformData, off, SLOT));
    const entries: GPUBindGroupEntry[] = [{
      binding: 0,
      resource: { buffer: this.#uniforms, offset: off, size: SLOT },
    }];
    buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
    const bindGroup = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries,
    });
    this.#slot++;
    this.#pass ??= this.#encoderNow().beginComputePass();
    this.#pass.setPipeline(pipeline);
    this.#pass.setBindGroup(0, bindGroup);
    let [x, y, z] = typeof workgroups === "number" ? [workgroups, 1, 1] : workgroups;
    const max = this.ctx.maxComputeWorkgroupsPerDimension;
    if (x > max) {
      if (y !== 1 || z !== 1) throw new RangeError(`kernel ${k.name}: grid too large`);
      y = Math.ceil(x / max);
      x = max;
    }
    if (x > 0 && y > 0 && z > 0) this.#pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
    this.trace?.push({ kernel: k, buffers: [...buffers], uniforms: { ...uniforms }, workgroups });
  }

  /** Records a zero-fill of the first `bytes` bytes of `buffer` (ordered with dispatches). */
  clear(buffer: GPUBuffer, bytes: number): void {
    this.#endPass();
    this.#encoderNow().clearBuffer(buffer, 0, Math.ceil(bytes / 4) * 4);
  }

  /** Records a buffer-to-buffer copy (ordered with dispatches). */
  copy(src: GPUBuffer, dst: GPUBuffer, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.#endPass();
    this.#encoderNow().copyBufferToBuffer(src, srcOffset, dst, dstOffset, Math.ceil(bytes / 4) * 4);
  }

  /** Submits all queued work. Cheap; does not wait. */
  flush(): void {
    if (!this.#encoder) return;
    this.#endPass();
    if (this.#slot > 0) {
      this.device.queue.writeBuffer(this.#uniforms, 0, this.#uniformData, 0, this.#slot * SLOT);
    }
    this.device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#slot = 0;
    this.stats.submits++;
  }

  upload(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    // Queued work may still read this (reused) buffer: submit it first, so the write lands after.
    this.flush();
    this.device.queue.writeBuffer(
      buffer,
      offset,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      Math.ceil(data.byteLength / 4) * 4,
    );
  }

  read(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    return this.readLater(buffer, bytes, offset)();
  }

  /** Queues the copy of a readback and submits; the returned function awaits its data. */
  readLater(buffer: GPUBuffer, bytes: number, offset = 0): () => Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    let mapped: Promise<void>;
    try {
      this.#endPass();
      if (size > 0) this.#encoderNow().copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.#encoderNow();
      this.flush();
      mapped = staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      throw e;
    }
    mapped.catch(() => {}); // the rejection reaches whoever awaits the data
    return async () => {
      try {
        const t0 = performance.now();
        await mapped;
        this.stats.readbackMs += performance.now() - t0;
        this.stats.readbacks++;
        return staging.getMappedRange().slice(0, bytes);
      } finally {
        staging.destroy();
      }
    };
  }

  async sync(): Promise<void> {
    this.flush();
    const t0 = performance.now();
    await this.device.queue.onSubmittedWorkDone();
    this.stats.readbackMs += performance.now() - t0;
  }
}

let runtime: Runtime | undefined;

/**
 * Initialises the runtime on the shared device. Must be awaited once before any tensor op.
 *
 * @throws {NoAdapterError} when no WebGPU adapter is available.
 */
export async function initGpu(): Promise<GpuContext> {
  if (!runtime) runtime = new Runtime(await getGpu());
  return runtime.ctx;
}

function rt(): Runtime {
  if (!runtime) throw new Error("GPU runtime not initialised: `await initGpu()` first.");
  return runtime;
}

/**
 * The adapter context of the initialised runtime (adapter description, limits in bytes).
 *
 * @throws {Error} when {@link initGpu} has not been awaited yet.
 */
export function gpuContext(): GpuContext {
  return rt().ctx;
}

/** The shared buffer pool (live and pooled byte counts for memory checks). */
export function bufferPool(): BufferPool {
  return rt().pool;
}

/**
 * Starts recording every dispatch (kernel, buffers, uniforms, grid) until
 * {@link stopDispatchTrace}; for profiling tools that replay a loop's kernels one by one.
 */
export function startDispatchTrace(): void {
  rt().trace = [];
}

/** Stops recording and returns the dispatches queued since {@link startDispatchTrace}. */
export function stopDispatchTrace(): DispatchRecord[] {
  const r = rt();
  const out = r.trace ?? [];
  r.trace = null;
  return out;
}

/** Dispatch, submit and readback counters. */
export function runtimeStats(): RuntimeStats {
  return rt().stats;
}

/**
 * Queues one compute dispatch.
 *
 * @param kernel the kernel; its pipeline is compiled on first use and cached.
 * @param buffers storage buffers for bindings 1..n.
 * @param uniforms the value of every field of the kernel's uniform struct, by name.
 * @param workgroups a workgroup count (split over y above 65,535) or an explicit 3-D grid.
 * @throws {Error} when the kernel's uniform layout disagrees with its WGSL struct (first use).
 * @throws {RangeError} when a uniform is missing or unknown, or a u32 value is not an integer in
 *   [0, 2³²).
 */
export function dispatch<F extends string>(
  kernel: Kernel<F>,
  buffers: readonly GPUBuffer[],
  uniforms: NoInfer<Readonly<Record<F, number>>>,
  workgroups: number | readonly [number, number, number],
): void {
  rt().dispatch(kernel, buffers, uniforms, workgroups);
}

/** Queues a zero-fill of `bytes` bytes of `buffer`. */
export function clearBuffer(buffer: GPUBuffer, bytes: number): void {
  rt().clear(buffer, bytes);
}

/** Queues a copy of `bytes` bytes from `src` to `dst`. */
export function copyBuffer(
  src: GPUBuffer,
  dst: GPUBuffer,
  bytes: number,
  srcOffset = 0,
  dstOffset = 0,
): void {
  rt().copy(src, dst, bytes, srcOffset, dstOffset);
}

/** Submits queued work without waiting. */
export function flush(): void {
  rt().flush();
}

/** Writes `data` into `buffer` at `offset` bytes, after all queued work. */
export function uploadBuffer(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  rt().upload(buffer, data, offset);
}

/** Submits queued work and reads `bytes` bytes of `buffer` back (one GPU round trip). */
export function readBuffer(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
  return rt().read(buffer, bytes, offset);
}

/**
 * Submits queued work with a readback of `bytes` bytes of `buffer`, without waiting: the returned
 * function awaits the data. Queue more work before awaiting it, and the round trip overlaps that
 * work instead of stalling the host. Call the function once (it frees the staging buffer).
 */
export function readBufferLater(
  buffer: GPUBuffer,
  bytes: number,
  offset = 0,
): () => Promise<ArrayBuffer> {
  return rt().readLater(buffer, bytes, offset);
}

/** Submits queued work and waits until the GPU has finished it. */
export function syncGpu(): Promise<void> {
  return rt().sync();
}

/** Number of workgroups needed to cover `n` items with `size` items per workgroup. */
export function groups(n: number, size: number): number {
  return Math.ceil(n / size);
}
