/**
 * TensorFlow.js's WebGPU backend as the benchmark baseline, set up on the same adapter as ours.
 *
 * `@tensorflow/tfjs-backend-webgpu` requests its own adapter (`navigator.gpu.requestAdapter` with
 * `powerPreference: "high-performance"`, as our runtime does) and its own `GPUDevice`; both
 * libraries then share the one physical adapter. {@link initTfWebGpu} fails loudly when TF.js did
 * not end up on WebGPU or when its adapter's vendor differs from ours.
 *
 * Waiting for TF.js fairly: TF.js records dispatches into a command encoder that it submits only
 * every 15 dispatches (`WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE`) or on a readback, so
 * `queue.onSubmittedWorkDone()` alone can resolve before the work was even submitted.
 * {@link tfSync} therefore closes TF.js's open compute pass, submits its pending encoder
 * (`submitQueue`, which also releases the buffers of tensors disposed meanwhile) and then awaits
 * `onSubmittedWorkDone()` — the same readback-free wait as our `syncGpu()` (flush, then
 * `onSubmittedWorkDone()`).
 *
 * @module
 */

// Pinned inline until deno.json's import map carries "@tensorflow/tfjs-core" and
// "@tensorflow/tfjs-backend-webgpu" (then: bare specifiers, and drop these lint exceptions).
import * as tf from "@tensorflow/tfjs-core";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import "@tensorflow/tfjs-backend-webgpu";

export { tf };

/** What {@link initTfWebGpu} found. */
export interface TfWebGpu {
  /** The active backend (always WebGPU). */
  backend: WebGPUBackend;
  /** Adapter vendor of TF.js's device. */
  vendor: string;
  /** Adapter description of TF.js's device (empty where WebGPU does not report it). */
  description: string;
}

let ready: TfWebGpu | undefined;

/**
 * Activates TF.js's WebGPU backend with every op kept on the GPU (`WEBGPU_CPU_FORWARD` off, so
 * small ops are not handed to the CPU backend) and checks that it runs on the same adapter as our
 * runtime: same adapter description where the device reports one (`GPUDevice.adapterInfo`), else
 * the same vendor.
 *
 * @param ours our runtime's adapter (`gpuContext()`): its `description` and `vendor`.
 * @throws {Error} when the WebGPU backend cannot be initialised, another backend is active
 * afterwards, or TF.js's adapter differs from `ours`.
 */
export async function initTfWebGpu(
  ours: { description: string; vendor: string },
): Promise<TfWebGpu> {
  if (ready) return ready;
  tf.env().set("WEBGPU_CPU_FORWARD", false);
  const ok = await tf.setBackend("webgpu");
  await tf.ready();
  if (!ok || tf.getBackend() !== "webgpu") {
    throw new Error(
      `TensorFlow.js did not start its WebGPU backend (active backend: ${tf.getBackend()}); ` +
        "the baseline would not run on the same adapter as our kernels",
    );
  }
  const backend = tf.backend() as unknown as WebGPUBackend;
  const info = (backend.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const tfInfo = (backend as unknown as { adapterInfo?: { vendor?: string } }).adapterInfo;
  const vendor = info?.vendor ?? tfInfo?.vendor ?? "";
  const description = info?.description ?? "";
  const same = description ? description === ours.description : vendor === ours.vendor;
  if (!same) {
    throw new Error(
      `TensorFlow.js runs on adapter "${description || vendor}", our kernels on ` +
        `"${ours.description}" (vendor ${ours.vendor}): the comparison would not be on one adapter`,
    );
  }
  ready = { backend, vendor, description };
  return ready;
}

/**
 * Submits everything TF.js has queued and waits until the GPU has finished it, without a
 * readback.
 *
 * @throws {Error} when {@link initTfWebGpu} has not been awaited.
 */
export function tfSync(): Promise<void> {
  if (!ready) throw new Error("TensorFlow.js not initialised: `await initTfWebGpu()` first");
  const be = ready.backend;
  be.ensureCommandEncoderReady();
  be.endComputePassEncoder();
  be.submitQueue();
  return be.queue.onSubmittedWorkDone();
}
