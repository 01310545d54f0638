/**
 * Model checkpoints in the safetensors format (a JSON header, then little-endian f32 data).
 *
 * Keys are `<layer>.<param>` (`conv1.weight`, `fc3.bias`, …); the header's `__metadata__` holds
 * `arch` (e.g. `"lenet5"`) and any hyper-parameters as strings. A PyTorch LeNet-5 saved with
 * `safetensors.torch.save_file(model.state_dict(), path)` loads with `arch` given: its module
 * names are mapped automatically ({@link mapParameterNames}) or through `nameMap`; PyTorch's
 * `Conv2d` ([O, C, kH, kW]) and `Linear` ([out, in]) layouts are the ones used here.
 *
 * @module
 */

import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  loadSafetensors,
  type SafetensorsContents,
  saveSafetensors,
} from "./safetensors.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import type { Sequential } from "./layers.ts";
import { type Architecture, ARCHITECTURES, buildModel } from "./models.ts";

/**
 * Reads every parameter back and serialises the model as a safetensors checkpoint: f32 tensors
 * named `<layer>.<param>` in the model's layouts, `__metadata__` holding `arch` and `metadata`'s
 * values as strings. Needs no file system (a browser offers the bytes as a download); the bytes
 * load back with {@link loadModelFromBytes}.
 *
 * @returns the checkpoint's bytes (a JSON header, then little-endian f32 data).
 */
export async function modelToBytes(
  model: Sequential,
  metadata: Record<string, string | number> = {},
): Promise<Uint8Array> {
  const tensors: Record<string, HostTensor> = {};
  for (const p of model.parameters()) {
    tensors[p.name] = { shape: [...p.value.shape], data: await p.value.read() };
  }
  const meta: Record<string, string> = { arch: model.arch };
  for (const [k, v] of Object.entries(metadata)) meta[k] = String(v);
  return encodeSafetensors(tensors, meta);
}

/**
 * Writes {@link modelToBytes}'s checkpoint to `path` atomically (temp file, then rename).
 *
 * @throws file-system errors (missing folder, no permission).
 */
export async function saveModel(
  path: string,
  model: Sequential,
  metadata: Record<string, string | number> = {},
): Promise<void> {
  await writeFileAtomic(path, await modelToBytes(model, metadata));
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
  /**
   * Architecture to build. Wins over the checkpoint's metadata; required when the metadata names
   * none (e.g. a plain PyTorch `state_dict`).
   */
  arch?: Architecture;
  /**
   * Checkpoint key → our key, for weights saved with other module names. Without it, names are
   * matched as {@link mapParameterNames} describes.
   */
  nameMap?: Record<string, string>;
  /** Refuse tensors holding NaN or infinite values ({@link checkFinite}). Default false. */
  requireFinite?: boolean;
}

/**
 * Checks that every tensor of a checkpoint holds finite values only; `source` names the checkpoint
 * in the message.
 *
 * @throws {CheckpointError} naming the first tensor with NaN or infinite values, how many it
 *   holds and the first one's index.
 */
export function checkFinite(contents: SafetensorsContents, source: string): void {
  for (const [name, t] of Object.entries(contents.tensors)) {
    let bad = 0;
    let first = -1;
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        if (bad++ === 0) first = i;
      }
    }
    if (bad > 0) {
      throw new CheckpointError(
        `${source}: tensor "${name}" holds ${bad} NaN or infinite value(s) (the first, ` +
          `${
            t.data[first]
          }, at index ${first}); the checkpoint is corrupt or its training diverged`,
      );
    }
  }
}

/**
 * Checks that no weight tensor (`*.weight`) of a checkpoint is all zero: one such layer makes a
 * network's output the same for every input (a blank or untrained checkpoint), so nothing can be
 * distilled from it. `source` names the checkpoint in the message.
 *
 * @throws {CheckpointError} saying whether all weights or which layers' weights are zero.
 */
export function checkNonZeroWeights(contents: SafetensorsContents, source: string): void {
  const weights = Object.entries(contents.tensors).filter(([name]) => name.endsWith("weight"));
  const zero = weights.filter(([, t]) => t.data.every((v) => v === 0)).map(([name]) => name);
  if (zero.length === 0) return;
  const what = zero.length === weights.length
    ? "the weights are all zero (a blank or untrained checkpoint)"
    : `${zero.join(", ")} ${zero.length === 1 ? "is" : "are"} all zero`;
  throw new CheckpointError(
    `${source}: ${what}, so its output is the same for every input and carries no class ` +
      `information; train it, or use another checkpoint`,
  );
}

/** Prefixes that wrappers add to every key (`DataParallel`, Lightning, `torch.compile`). */
const WRAPPER_PREFIXES = ["module.", "model.", "_orig_mod.", "net."];

/** Splits a key into text and number runs, so that `features.10` sorts after `features.3`. */
function naturalCompare(a: string, b: string): number {
  const split = (s: string) => s.split(/(\d+)/).map((p, i) => (i % 2 ? Number(p) : p));
  const pa = split(a);
  const pb = split(b);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    if (typeof pa[i] === "number" && typeof pb[i] === "number") {
      return (pa[i] as number) - (pb[i] as number);
    }
    return String(pa[i]) < String(pb[i]) ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * Maps a checkpoint's tensor names onto `model`'s parameter names (`conv1.weight`, …, `fc3.bias`).
 *
 * 1. Wrapper prefixes (`module.`, `model.`, `_orig_mod.`, `net.`) are stripped when every key
 *    has them.
 * 2. Names that already match every parameter are kept as they are.
 * 3. Otherwise the checkpoint's modules (keys `<module>.weight` / `<module>.bias`) are taken in
 *    natural order (`features.3` before `features.10`), the 4-D (convolution) ones first, then
 *    the 2-D (linear) ones, and paired with the model's layers in order, as in PyTorch's
 *    `nn.Sequential` (`features.0`, `classifier.4`) or `conv1`/`fc1`-style names.
 *
 * Every pairing is checked against the parameter's shape.
 *
 * @returns checkpoint key → parameter name, or null when no mapping fits.
 */
export function mapParameterNames(
  tensors: Record<string, HostTensor>,
  model: Sequential,
): Record<string, string> | null {
  const params = model.parameters();
  let keys = Object.keys(tensors);
  let prefix = "";
  for (let stripped = true; stripped;) {
    stripped = false;
    for (const p of WRAPPER_PREFIXES) {
      if (keys.length > 0 && keys.every((k) => k.startsWith(p))) {
        prefix += p;
        keys = keys.map((k) => k.slice(p.length));
        stripped = true;
      }
    }
  }
  const fits = (key: string, param: (typeof params)[number]) =>
    tensors[prefix + key]?.shape.join() === param.value.shape.join();
  if (params.every((p) => keys.includes(p.name) && fits(p.name, p))) {
    return Object.fromEntries(params.map((p) => [prefix + p.name, p.name]));
  }
  // By module order: group the model's parameters by layer and the checkpoint's keys by module.
  const layersOf = (names: string[]) => {
    const out = new Map<string, string[]>();
    for (const n of names) {
      const dot = n.lastIndexOf(".");
      const mod = dot < 0 ? "" : n.slice(0, dot);
      out.set(mod, [...(out.get(mod) ?? []), n.slice(dot + 1)]);
    }
    return out;
  };
  const ours = layersOf(params.map((p) => p.name));
  const theirs = layersOf(keys);
  const rank = (mod: string) => tensors[`${prefix}${mod}.weight`]?.shape.length === 4 ? 0 : 1;
  const modules = [...theirs.keys()].sort((a, b) => rank(a) - rank(b) || naturalCompare(a, b));
  if (modules.length !== ours.size) return null;
  const map: Record<string, string> = {};
  let i = 0;
  for (const [layer, suffixes] of ours) {
    const mod = modules[i++];
    const have = theirs.get(mod)!;
    if (have.length !== suffixes.length) return null;
    for (const s of suffixes) {
      const param = params.find((p) => p.name === `${layer}.${s}`)!;
      if (!have.includes(s) || !fits(`${mod}.${s}`, param)) return null;
      map[`${prefix}${mod}.${s}`] = param.name;
    }
  }
  return map;
}

/**
 * Builds a model from decoded safetensors contents (see {@link loadModel}); `source` names the
 * checkpoint in error messages.
 *
 * @throws {CheckpointError} as {@link loadModel}.
 */
export function modelFromSafetensors(
  contents: SafetensorsContents,
  source: string,
  opts: LoadModelOptions = {},
): LoadedModel {
  const { tensors, metadata } = contents;
  if (opts.requireFinite) checkFinite(contents, source);
  const arch = (opts.arch ?? metadata.arch ?? architectureOf(tensors)) as
    | Architecture
    | undefined;
  if (!arch) {
    throw new CheckpointError(
      `${source}: the checkpoint names no architecture (no "arch" in its __metadata__, as in a ` +
        `plain PyTorch state_dict) and its tensor shapes fit none of ` +
        `${ARCHITECTURES.join(", ")}; name one`,
    );
  }
  if (!ARCHITECTURES.includes(arch)) {
    throw new CheckpointError(
      `${source}: unknown architecture "${arch}"; known: ${ARCHITECTURES.join(", ")}`,
    );
  }
  const model = buildModel(arch);
  try {
    const map = opts.nameMap ?? mapParameterNames(tensors, model);
    const renamed: typeof tensors = {};
    for (const [k, v] of Object.entries(tensors)) renamed[map?.[k] ?? k] = v;
    const expected = () => model.parameters().map((p) => `${p.name} [${p.value.shape}]`).join(", ");
    const held = () =>
      Object.entries(tensors).map(([k, t]) => `${k} [${t.shape}]`).join(", ") || "no tensors";
    for (const p of model.parameters()) {
      const t = renamed[p.name];
      if (!t) {
        throw new CheckpointError(
          `${source}: no tensor of the checkpoint maps to "${p.name}" of ${arch}; ${arch} needs ` +
            `${expected()} (or PyTorch module names in the same order, e.g. features.0 / ` +
            `classifier.4, optionally under a module. or model. prefix); the checkpoint holds ` +
            `${held()}: is it a checkpoint of another architecture?`,
        );
      }
      if (t.shape.join() !== p.value.shape.join()) {
        throw new CheckpointError(
          `${source}: tensor "${p.name}" has shape [${t.shape}] but ${arch} needs ` +
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

/**
 * The one architecture whose parameters the tensors fit (names mapped as {@link mapParameterNames}
 * describes, every shape equal), or null when none or several do: how a plain PyTorch state_dict,
 * which names no architecture, is read.
 */
export function architectureOf(tensors: SafetensorsContents["tensors"]): Architecture | null {
  const fits = ARCHITECTURES.filter((arch) => {
    const model = buildModel(arch);
    try {
      return mapParameterNames(tensors, model) !== null; // every pairing is shape-checked
    } finally {
      model.dispose();
    }
  });
  return fits.length === 1 ? fits[0] : null;
}

/**
 * Loads a checkpoint from the bytes of a safetensors file (a browser's `fetch`, say); `source`
 * names it in error messages.
 *
 * @throws {CheckpointError} as {@link loadModel}.
 */
export function loadModelFromBytes(
  bytes: Uint8Array,
  source = "<checkpoint bytes>",
  opts: LoadModelOptions = {},
): LoadedModel {
  return modelFromSafetensors(decodeSafetensors(bytes, source), source, opts);
}

/**
 * Loads a checkpoint into a new model of the architecture `opts.arch`, else the one named in its
 * metadata. Tensor names are mapped as {@link mapParameterNames} describes unless `opts.nameMap`
 * is given.
 *
 * @throws {CheckpointError} when the file is missing, not safetensors, names no known
 *   architecture, or a tensor is missing or has another shape than the architecture needs
 *   (the message names the tensor, both shapes and the names expected); with
 *   `opts.requireFinite`, when a tensor holds NaN or infinite values.
 */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  return modelFromSafetensors(await loadSafetensors(path), path, opts);
}

/** Where a training loop can continue from: the optimiser state after a finished epoch. */
export interface TrainingState {
  /** Epochs already finished. */
  epoch: number;
  /** Adam's step counter. */
  t: number;
  /** Adam's moments in parameter order: every m, then every v. */
  moments: Float32Array[];
}

/**
 * Writes a model's weights with its Adam state (tensors `<param>`, `adam.m.<param>`,
 * `adam.v.<param>`; metadata `arch`, `epoch`, `adam_t` and `extra`), atomically.
 */
export async function saveTrainingState(
  path: string,
  model: Sequential,
  state: TrainingState,
  extra: Record<string, string> = {},
): Promise<void> {
  const tensors: Record<string, HostTensor> = {};
  const params = model.parameters();
  for (const p of params) {
    tensors[p.name] = { shape: [...p.value.shape], data: await p.value.read() };
  }
  params.forEach((p, i) => {
    tensors[`adam.m.${p.name}`] = { shape: [...p.value.shape], data: state.moments[i] };
    tensors[`adam.v.${p.name}`] = {
      shape: [...p.value.shape],
      data: state.moments[params.length + i],
    };
  });
  await saveSafetensors(path, tensors, {
    ...extra,
    arch: model.arch,
    epoch: String(state.epoch),
    adam_t: String(state.t),
  });
}

/**
 * Reads what {@link saveTrainingState} wrote, for a model shaped like `model` (whose weights are
 * not touched).
 *
 * @returns the weights in parameter order, the state, and the metadata.
 * @throws {CheckpointError} when the file is unreadable or a tensor does not fit `model`.
 */
export async function loadTrainingState(
  path: string,
  model: Sequential,
): Promise<{ weights: Float32Array[]; state: TrainingState; metadata: Record<string, string> }> {
  const { tensors, metadata } = await loadSafetensors(path);
  const params = model.parameters();
  for (const p of params) {
    for (const key of [p.name, `adam.m.${p.name}`, `adam.v.${p.name}`]) {
      if (tensors[key]?.data.length !== p.value.size) {
        throw new CheckpointError(
          `${path} does not fit a ${model.arch} model (tensor ${key}); delete it to train anew`,
        );
      }
    }
  }
  return {
    weights: params.map((p) => tensors[p.name].data),
    state: {
      epoch: Number(metadata.epoch),
      t: Number(metadata.adam_t),
      moments: [
        ...params.map((p) => tensors[`adam.m.${p.name}`].data),
        ...params.map((p) => tensors[`adam.v.${p.name}`].data),
      ],
    },
    metadata,
  };
}
