/**
 * Data-free knowledge distillation on WebGPU: compress a trained classifier (the *teacher*) into
 * a smaller one (the *student*) without any of its training data, after Z. Wang, "Data-Free
 * Knowledge Distillation with Soft Targeted Transfer Set Synthesis", AAAI 2021
 * (arXiv:2104.04868).
 *
 * From the teacher alone, a multivariate normal over one layer's pre-activations gives soft
 * targets, noise images are optimised through the frozen teacher until it predicts them (the
 * *transfer set*), and the student is trained on those images with the knowledge-distillation loss
 * of Hinton et al. (2015). Everything runs in hand-written WGSL kernels with a small autograd tape,
 * on any WebGPU adapter — a GPU, or Mesa's llvmpipe software rasteriser on a machine without one.
 *
 * The high-level functions are {@link trainTeacher}, {@link synthesizeTransferSet},
 * {@link distill} and {@link evaluate}; below them this module exports the tensors, the
 * differentiable functions and the tape, the layers and models, the optimisers, the checkpoint
 * format, the feature-space model and the dataset loader. Tensors are `f32`, row-major, images
 * NCHW `[N, 1, 32, 32]` with pixels in [0, 1]. Await {@link initGpu} once before creating any
 * tensor or model (the high-level functions call it themselves); it throws
 * {@link NoAdapterError} when the machine has no WebGPU adapter.
 *
 * @example Distil a student from a teacher checkpoint (run with `deno run -A`)
 * ```ts ignore
 * import {
 *   distill, evaluate, findDataDir, initGpu, loadModel, loadSplit, saveModel, synthesizeTransferSet,
 * } from "@dfkd/webgpu";
 *
 * await initGpu(); // once, before any tensor or model is created
 * const { model: teacher } = await loadModel("examples/teachers/lenet5-fashion-mnist.safetensors");
 * const transfer = await synthesizeTransferSet(teacher, { samples: 2000, seed: 0 });
 * const { student } = await distill(teacher, transfer, {
 *   epochs: 20,
 *   onProgress: (p) => console.log(`step ${p.step}/${p.steps}: loss ${p.loss.toFixed(4)}`),
 * });
 * const dir = findDataDir("fashion-mnist");
 * if (dir) console.log("student accuracy", await evaluate(student, await loadSplit(dir, "test")));
 * await saveModel("student.safetensors", student);
 * ```
 *
 * @example The tensors and the tape directly
 * ```ts
 * import { crossEntropyLoss, initGpu, linear, Tape, Tensor, tidy } from "./mod.ts";
 *
 * await initGpu();
 * const w = Tensor.from([0.1, -0.2, 0.3, 0.4, 0.5, -0.6], [2, 3]);
 * w.requiresGrad = true;
 * const grad = tidy(() => {
 *   const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
 *   const labels = Tensor.from(new Uint32Array([0, 1]));
 *   const tape = new Tape();
 *   const loss = tape.run(() => crossEntropyLoss(linear(x, w, null), labels));
 *   return tape.backward(loss, [w]).get(w)!;
 * });
 * console.log(await grad.read()); // dLoss/dW, shape [2, 3]
 * ```
 *
 * @module
 */

// High-level API.
export {
  distill,
  type DistillOptions,
  type DistillProgress,
  type DistillResult,
  evaluate,
  type SynthesisProgress,
  type SynthesizedTransferSet,
  type SynthesizeOptions,
  synthesizeTransferSet,
  trainTeacher,
  type TrainTeacherOptions,
  type TrainTeacherResult,
  type TransferSet,
} from "./src/api.ts";
export type { LabelledImages, LrSchedule, TrainProgress } from "./src/nn/train.ts";

// Settings of a run: the schema, the defaults, the presets, one resolver.
export {
  type AdversarialSettings,
  type ConfigOverrides,
  DEFAULTS,
  type DfkdConfig,
  type DistillationSettings,
  type Method,
  METHODS,
  type Preset,
  presetOverrides,
  PRESETS,
  resolveConfig,
  type ResolveOptions,
  SETTINGS,
  type SettingSpec,
  type Stage,
  type SynthesisSettings,
  validateConfig,
} from "./src/dfkd/settings.ts";

// The stages of the method and the resumable run that composes them.
export {
  type DistillationHooks,
  distillationStage,
  type DistillationStageResult,
  type SynthesisHooks,
  type SynthesisSlice,
  synthesisStage,
  type SynthesisStageProgress,
  type SynthesisStageResult,
  type TransferBatch,
} from "./src/dfkd/pipeline.ts";
export {
  type RunContext,
  runDfkd,
  type RunEvent,
  type RunMetrics,
  type RunOutcome,
  runShard,
  type ShardOutcome,
} from "./src/dfkd/run.ts";
export {
  clearRunFolder,
  lockRunFolder,
  readRunFile,
  type RunFile,
  type ShardFile,
  writeRunFile,
} from "./src/dfkd/run_folder.ts";
export { type Shard, shardSlice } from "./src/dfkd/shard.ts";
export { type BatchLimits, synthesisBatchSize } from "./src/dfkd/batch_size.ts";

// The method's building blocks.
export { buildFeatureModel, type FeatureModel, sampleFeatures } from "./src/dfkd/feature_model.ts";
export { softTargets } from "./src/dfkd/soft_targets.ts";
export { gridByClass, targetClass } from "./src/dfkd/diagnostics.ts";
export type { SoftTargetReport, TransferSetStats } from "./src/dfkd/diagnostics.ts";
export type { BalancePilot } from "./src/dfkd/transfer_set.ts";
export type { AdversarialOptions } from "./src/dfkd/distill.ts";

// GPU runtime and tensors.
export { gpuContext, initGpu } from "./src/gpu/runtime.ts";
export { type GpuContext, NoAdapterError } from "./src/gpu/device.ts";
export { type Derived, type DType, keep, Tensor, type TensorTree, tidy } from "./src/tensor.ts";
export { Rng } from "./src/random.ts";

// Autograd.
export { type BackwardRule, noGrad, Tape } from "./src/autograd/tape.ts";
export {
  activationLoss,
  add,
  avgPool2d,
  conv2d,
  crossEntropyLoss,
  kdDivergence,
  kdLoss,
  klDivLoss,
  linear,
  maxPool2d,
  relu,
  reshape,
} from "./src/autograd/functions.ts";
export type { Conv2dOptions } from "./src/ops/conv2d.ts";
export type { Pool2dOptions } from "./src/ops/pool.ts";
export type { ActivationNorm, LossReduction } from "./src/ops/loss.ts";

// Layers, models, optimisers, checkpoints.
export {
  AvgPool2d,
  Conv2d,
  Flatten,
  type Init,
  INITS,
  type Layer,
  Linear,
  MaxPool2d,
  type Parameter,
  Pool2d,
  ReLU,
  type RunOptions,
  Sequential,
} from "./src/nn/layers.ts";
export { type Architecture, ARCHITECTURES, buildModel } from "./src/nn/models.ts";
export { Adam, cosineLr, Sgd } from "./src/nn/optim.ts";
export type { AdamOptions, SgdOptions } from "./src/ops/optim.ts";
export {
  checkFinite,
  checkNonZeroWeights,
  type LoadedModel,
  loadModel,
  loadModelFromBytes,
  type LoadModelOptions,
  loadTrainingState,
  mapParameterNames,
  modelFromSafetensors,
  modelToBytes,
  saveModel,
  saveTrainingState,
  type TrainingState,
} from "./src/nn/checkpoint.ts";
export {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  loadSafetensors,
  type SafetensorsContents,
  saveSafetensors,
} from "./src/nn/safetensors.ts";

// Data.
export {
  CLASS_NAMES,
  DataError,
  type Dataset,
  DATASET_NAMES,
  type DatasetName,
  findDataDir,
  loadSplit,
  missingDataMessage,
  parseDatasetName,
  type Split,
} from "./src/data/datasets.ts";

// Viewing images (a canvas in a browser; `src/io/png.ts` encodes the same raster as PNG in Deno).
export { type GridOptions, imageGridRgba, type RgbaImage } from "./src/io/grid.ts";

// Errors: one hierarchy.
export {
  DeviceLostError,
  DfkdError,
  DiskFullError,
  isDfkdFault,
  NumericalError,
  RunFolderError,
  SettingError,
} from "./src/errors.ts";
