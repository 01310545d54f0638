/**
 * Model checkpoints in the safetensors format (a JSON header, then little-endian f32 data).
 *
 * Keys are `<layer>.<param>` (`conv1.weight`, `fc3.bias`, …); the header's `__metadata__` holds
 * `arch` (e.g. `"lenet5"`) and any hyper-parameters as strings. A PyTorch LeNet-5 saved with
 * `safetensors.torch.save_file(model.state_dict(), path)` loads when its module names match, or
 * through `nameMap` (for example `{"features.0.weight": "conv1.weight", …}`); PyTorch's
 * `Conv2d` ([O, C, kH, kW]) and `Linear` ([out, in]) layouts are the ones used here.
 *
 * @module
 */

import { CheckpointError, loadSafetensors, saveSafetensors } from "./safetensors.ts";
import type { Sequential } from "./layers.ts";
import { type Architecture, ARCHITECTURES, buildModel } from "./models.ts";

/** Reads every parameter back and writes a checkpoint atomically (temp file, then rename). */
export async function saveModel(
  path: string,
  model: Sequential,
  metadata: Record<string, string | number> = {},
): Promise<void> {
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const p of model.parameters()) {
    tensors[p.name] = { shape: [...p.value.shape], data: await p.value.read() };
  }
  const meta: Record<string, string> = { arch: model.arch };
  for (const [k, v] of Object.entries(metadata)) meta[k] = String(v);
  await saveSafetensors(path, tensors, meta);
}

/** A loaded model and the checkpoint's metadata. */
export interface LoadedModel {
  /** The model, frozen (`requiresGrad` off). */
  model: Sequential;
  /** The checkpoint's `__metadata__` strings, e.g. `arch`, `dataset`. */
  metadata: Record<string, string>;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** Architecture to build when the checkpoint's metadata has none (e.g. a PyTorch file). */
  arch?: Architecture;
  /** Checkpoint key → our key, for weights saved with other module names. */
  nameMap?: Record<string, string>;
}

/**
 * Loads a checkpoint into a new model of the architecture named in its metadata.
 *
 * @throws {CheckpointError} when the file is missing, not safetensors, names no known
 *   architecture, or a tensor is missing or has another shape than the architecture needs
 *   (the message names the tensor and both shapes).
 */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { tensors, metadata } = await loadSafetensors(path);
  const arch = (metadata.arch ?? opts.arch) as Architecture | undefined;
  if (!arch) {
    throw new CheckpointError(
      `${path}: the checkpoint names no architecture (no "arch" in __metadata__); ` +
        `pass the architecture explicitly (${ARCHITECTURES.join(", ")})`,
    );
  }
  if (!ARCHITECTURES.includes(arch)) {
    throw new CheckpointError(
      `${path}: unknown architecture "${arch}"; known: ${ARCHITECTURES.join(", ")}`,
    );
  }
  const renamed: typeof tensors = {};
  for (const [k, v] of Object.entries(tensors)) renamed[opts.nameMap?.[k] ?? k] = v;
  const model = buildModel(arch);
  try {
    for (const p of model.parameters()) {
      const t = renamed[p.name];
      if (!t) {
        throw new CheckpointError(
          `${path}: tensor "${p.name}" of ${arch} is missing from the checkpoint ` +
            `(it holds: ${
              Object.keys(tensors).join(", ")
            }); is it a checkpoint of another architecture?`,
        );
      }
      if (t.shape.join() !== p.value.shape.join()) {
        throw new CheckpointError(
          `${path}: tensor "${p.name}" has shape [${t.shape}] but ${arch} needs ` +
            `[${p.value.shape}]; is it a checkpoint of another architecture?`,
        );
      }
      p.value.write(t.data);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, metadata };
}
