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
 * - binding 0 of group 0 is `var<uniform> p: Params`, a struct of 4-byte fields: first every
 *   `u32` field (in the order of `params.u32`), then every `f32` field (`params.f32`);
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

/** A compute kernel: WGSL source, entry point and pipeline-overridable constants. */
export interface Kernel {
  /** Unique name, used in the pipeline cache key and in error messages. */
  name: string;
  /** WGSL source. */
  code: string;
  /** Entry point, default `"main"`. */
  entryPoint?: string;
  /** Values for `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number>;
}

/** Shape parameters of one dispatch, written to the kernel's uniform `Params` struct. */
export interface Params {
  u32?: readonly number[];
  f32?: readonly number[];
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
  #modules = new Map<string, GPUShaderModule>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #uniforms: GPUBuffer;
  #uniformData = new ArrayBuffer(SLOT * SLOTS);
  #slot = 0;

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

  pipeline(k: Kernel): GPUComputePipeline {
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
    params: Params,
    workgroups: number | readonly [number, number, number],
  ): void {
    if (this.#slot === SLOTS) this.flush();
    const u = params.u32 ?? [];
    const f = params.f32 ?? [];
    const n = u.length + f.length;
    if (n * 4 > SLOT) throw new RangeError(`kernel ${k.name}: too many params`);
    const off = this.#slot * SLOT;
    const view = new DataView(this.#uniformData, off, SLOT);
    u.forEach((v, i) => view.setUint32(i * 4, v, true));
    f.forEach((v, i) => view.setFloat32((u.length + i) * 4, v, true));
    const pipeline = this.pipeline(k);
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

  /** Submits all queued work. Cheap (~40 µs); does not wait. */
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

  async read(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      this.#endPass();
      if (size > 0) this.#encoderNow().copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.#encoderNow();
      this.flush();
      const t0 = performance.now();
      await staging.mapAsync(GPUMapMode.READ);
      this.stats.readbackMs += performance.now() - t0;
      this.stats.readbacks++;
      return staging.getMappedRange().slice(0, bytes);
    } finally {
      staging.destroy();
    }
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

/** Dispatch, submit and readback counters. */
export function runtimeStats(): RuntimeStats {
  return rt().stats;
}

/**
 * Queues one compute dispatch.
 *
 * @param kernel the kernel; its pipeline is compiled on first use and cached.
 * @param buffers storage buffers for bindings 1..n.
 * @param params uniform values for binding 0 (u32 fields first, then f32).
 * @param workgroups a workgroup count (split over y above 65,535) or an explicit 3-D grid.
 */
export function dispatch(
  kernel: Kernel,
  buffers: readonly GPUBuffer[],
  params: Params,
  workgroups: number | readonly [number, number, number],
): void {
  rt().dispatch(kernel, buffers, params, workgroups);
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

/** Submits queued work and reads `bytes` bytes of `buffer` back (one ~11 ms round trip). */
export function readBuffer(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
  return rt().read(buffer, bytes, offset);
}

/** Submits queued work and waits until the GPU has finished it. */
export function syncGpu(): Promise<void> {
  return rt().sync();
}

/** Number of workgroups needed to cover `n` items with `size` items per workgroup. */
export function groups(n: number, size: number): number {
  return Math.ceil(n / size);
}
