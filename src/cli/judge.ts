/**
 * The judge of `deno task synth --judge FILE`: an independent model of the teacher's dataset that
 * took no part in the synthesis. The run reports the share of the transfer set's soft-target
 * classes it agrees with (`judge_agreement` in `metrics.json`), a check that the images carry
 * their class rather than only fooling the teacher that made them.
 *
 * @module
 */

import { CheckpointError } from "../errors.ts";
import { checkNonZeroWeights, modelFromSafetensors } from "../nn/checkpoint.ts";
import type { Sequential } from "../nn/layers.ts";
import type { Architecture } from "../nn/models.ts";
import { loadSafetensors } from "../nn/safetensors.ts";

/**
 * Loads the judge checkpoint at `path` (its architecture from its metadata, else the teacher's)
 * and checks that it takes the teacher's input shape and predicts as many classes.
 *
 * @throws {CheckpointError} when the file is missing or not a usable checkpoint, or its shapes do
 *   not fit the teacher's.
 */
export async function openJudge(path: string, teacher: Sequential): Promise<Sequential> {
  const hint = "pass --judge a classifier checkpoint of the teacher's dataset (e.g. another " +
    "teacher trained on it), or drop --judge";
  let judge: Sequential;
  try {
    const contents = await loadSafetensors(path);
    checkNonZeroWeights(contents, path);
    const arch: Architecture | undefined = contents.metadata.arch === undefined
      ? teacher.arch as Architecture
      : undefined;
    judge = modelFromSafetensors(contents, path, { arch, requireFinite: true }).model;
  } catch (e) {
    if (e instanceof CheckpointError) throw new CheckpointError(`--judge: ${e.message}; ${hint}`);
    throw e;
  }
  const classes = (m: Sequential) => m.shapes(1).at(-1)!.shape[1];
  if (
    judge.inputShape.join("x") !== teacher.inputShape.join("x") ||
    classes(judge) !== classes(teacher)
  ) {
    const shape = (m: Sequential) => `[${m.inputShape}] → ${classes(m)} classes`;
    judge.dispose();
    throw new CheckpointError(
      `--judge ${path}: it maps ${shape(judge)}, the teacher ${shape(teacher)}; ${hint}`,
    );
  }
  return judge;
}
