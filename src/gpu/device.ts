/**
 * WebGPU adapter and device acquisition: one shared device per process.
 *
 * The adapter's own limits for storage-buffer size, buffer size and workgroup storage are
 * requested (Deno reports them as numbers or bigints, so each is coerced with `Number()`).
 *
 * @module
 */

import { NoAdapterError } from "../errors.ts";

export { NoAdapterError };

/** What the rest of the runtime needs to know about the adapter it runs on. */
export interface GpuContext {
  /** The shared device. */
  device: GPUDevice;
  /** Adapter description, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  description: string;
  /** Adapter vendor string as reported by WebGPU. */
  vendor: string;
  /** True for software adapters (llvmpipe, SwiftShader, WARP). */
  isFallbackAdapter: boolean;
  /** Largest storage-buffer binding in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer in bytes. */
  maxBufferSize: number;
  /** Workgroup (shared) memory per workgroup in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Largest workgroup count per dispatch dimension. */
  maxComputeWorkgroupsPerDimension: number;
}

let context: Promise<GpuContext> | undefined;

/** How the shared device was lost; null while it is usable (or was destroyed on purpose). */
let lostInfo: { reason: string; message: string } | null = null;

/**
 * Whether the shared device has been lost for a reason other than `"destroyed"` (driver reset,
 * GPU removed, out of memory): the loss's reason and message, or null while the device is usable.
 * Long loops check this between steps so that they can stop after saving finished work.
 */
export function deviceLost(): { reason: string; message: string } | null {
  return lostInfo;
}

/**
 * The process-wide GPU context, created on first call.
 *
 * @throws {NoAdapterError} when `navigator.gpu` is missing or no adapter is found.
 */
export function getGpu(): Promise<GpuContext> {
  context ??= createContext();
  return context;
}

async function createContext(): Promise<GpuContext> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new NoAdapterError();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new NoAdapterError();
  // Read the adapter's info before requesting the device.
  const info = adapter.info;
  // Browsers may blank the description (Chrome does for SwiftShader): fall back to vendor and
  // architecture, e.g. "google swiftshader".
  const description = info.description || info.device ||
    [info.vendor, info.architecture].filter(Boolean).join(" ") || "unknown adapter";
  const isFallbackAdapter = Boolean(
    (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      /llvmpipe|swiftshader|warp|lavapipe/i.test(description),
  );
  const lim = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: Number(lim.maxStorageBufferBindingSize),
    maxBufferSize: Number(lim.maxBufferSize),
    maxComputeWorkgroupStorageSize: Number(lim.maxComputeWorkgroupStorageSize),
    maxComputeInvocationsPerWorkgroup: Number(lim.maxComputeInvocationsPerWorkgroup),
    maxComputeWorkgroupSizeX: Number(lim.maxComputeWorkgroupSizeX),
    maxComputeWorkgroupSizeY: Number(lim.maxComputeWorkgroupSizeY),
    maxStorageBuffersPerShaderStage: Number(lim.maxStorageBuffersPerShaderStage),
  };
  const device = await adapter.requestDevice({ requiredLimits });
  device.lost.then((lost) => {
    if (lost.reason !== "destroyed") {
      lostInfo = { reason: String(lost.reason ?? "unknown"), message: lost.message };
      console.error(`WebGPU device lost: ${lost.message}`);
    }
  });
  return {
    device,
    description,
    vendor: info.vendor,
    isFallbackAdapter,
    maxStorageBufferBindingSize: requiredLimits.maxStorageBufferBindingSize,
    maxBufferSize: requiredLimits.maxBufferSize,
    maxComputeWorkgroupStorageSize: requiredLimits.maxComputeWorkgroupStorageSize,
    maxComputeWorkgroupsPerDimension: Number(lim.maxComputeWorkgroupsPerDimension),
  };
}
