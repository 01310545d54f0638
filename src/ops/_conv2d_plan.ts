/**
 * Launch shapes of the convolution kernels, computed on the CPU: the forward kernel's register
 * block, the prepared-input layouts, the forward and input-gradient passes, the forward and
 * weight-gradient plans and the split of the weights into uniform-buffer chunks.
 *
 * @module
 */

import { type Conv2dGeometry, UNIFORM_FLOATS } from "./_conv2d_geometry.ts";

/**
 * (c, ky) rows per invocation of the weight-gradient kernel (its `override RW`, at most its
 * `MAX_RW` = 5): 5, the best for 5-wide kernels, or 3 when more than 5 taps per row would make
 * too many accumulators.
 */
export function weightGradRows(tn: number): number {
  return tn <= 5 ? 5 : 3;
}

/**
 * Register blocks of the forward kernel (output channels × vec4 groups of columns) with their
 * measured multiply-add rates on llvmpipe at full occupancy (GFLOP/s, 256×16×32×32 → 32, 5×5).
 */
const BLOCKS = [
  { ob: 4, pv: 2, rate: 24 },
  { ob: 8, pv: 1, rate: 21 },
  { ob: 2, pv: 4, rate: 18 },
  { ob: 1, pv: 4, rate: 11 },
  { ob: 1, pv: 8, rate: 12 },
] as const;

/**
 * Picks the block with the least predicted time per useful output: (K / rate + 1) / useful, where
 * K = C·kH·kW multiply-adds per output, the 1 stands for the fixed cost of an output (its
 * index math and store, about 24 multiply-adds' worth) and `useful` is the fraction of the
 * computed outputs that exist (channel and column blocks past the edge are wasted).
 */
function pickBlock(O: number, OW: number, K: number): { ob: number; pv: number } {
  let best: { ob: number; pv: number } = BLOCKS[0];
  let bestCost = Infinity;
  for (const b of BLOCKS) {
    const useful = (O / (Math.ceil(O / b.ob) * b.ob)) *
      (OW / (Math.ceil(OW / (4 * b.pv)) * 4 * b.pv));
    const cost = (K / b.rate + 1) / useful;
    if (cost < bestCost * (1 - 1e-9)) {
      bestCost = cost;
      best = b;
    }
  }
  return best;
}

/**
 * How `prepare_input` lays out `planes` source planes of `height × width`: into
 * [planes, rows, phases, vec4s · 4], source row `iy` at row `padTop + iy · dilation`, column `ix`
 * at padded column `padLeft + ix · dilation` (split over `phases` column phases). Pads may be
 * negative (crop).
 */
export interface PreparedLayout {
  planes: number;
  height: number;
  width: number;
  rows: number;
  phases: number;
  vec4s: number;
  padTop: number;
  padLeft: number;
  dilation: number;
}

/**
 * One run of the forward kernel: a stride-`stride` convolution of `batch` images of
 * `inChannels` source planes (sized, dilated and padded as `source`) into `outChannels` planes of
 * `outHeight × outWidth`. The weights are [outChannels, inChannels, kH, kW], or, when `flip`,
 * [inChannels, outChannels, kH, kW] used flipped and transposed.
 */
export interface ConvPass {
  batch: number;
  inChannels: number;
  outChannels: number;
  kernelHeight: number;
  kernelWidth: number;
  stride: number;
  outHeight: number;
  outWidth: number;
  source: { height: number; width: number; dilation: number; padTop: number; padLeft: number };
  flip: boolean;
}

/** The forward convolution of `g` as a pass of the forward kernel. */
export function forwardPass(g: Conv2dGeometry): ConvPass {
  const { batch, inChannels, outChannels, kernelHeight, kernelWidth, stride, padding } = g;
  return {
    batch,
    inChannels,
    outChannels,
    kernelHeight,
    kernelWidth,
    stride,
    outHeight: g.outHeight,
    outWidth: g.outWidth,
    source: {
      height: g.inHeight,
      width: g.inWidth,
      dilation: 1,
      padTop: padding,
      padLeft: padding,
    },
    flip: false,
  };
}

/**
 * The gradient of the input of `g` as a pass of the forward kernel: the stride-1 convolution of
 * gy (dilated by the stride, padded by `k − 1 − p`) with the flipped, transposed weights; rows
 * past the last window of the forward pass get zeros.
 */
export function backwardInputPass(g: Conv2dGeometry): ConvPass {
  const { batch, kernelHeight, kernelWidth, padding } = g;
  return {
    batch,
    inChannels: g.outChannels,
    outChannels: g.inChannels,
    kernelHeight,
    kernelWidth,
    stride: 1,
    outHeight: g.inHeight,
    outWidth: g.inWidth,
    source: {
      height: g.outHeight,
      width: g.outWidth,
      dilation: g.stride,
      padTop: kernelHeight - 1 - padding,
      padLeft: kernelWidth - 1 - padding,
    },
    flip: true,
  };
}

/**
 * The launch shape of a pass: the register block (`ob` channels × `pv` vec4 groups of columns),
 * column blocks per row, images per block of the invocation order, invocations per dispatch, the
 * prepared-input layout and the rows of it that hold source rows (`rowLo` to `rowHi`, every
 * `dilation`-th in between; the kernel skips the all-zero rows outside).
 */
export interface ForwardPlan {
  ob: number;
  pv: number;
  nXB: number;
  NB: number;
  total: number;
  input: PreparedLayout;
  rowLo: number;
  rowHi: number;
}

export function forwardPlan(pass: ConvPass): ForwardPlan {
  const { kernelHeight: KH, kernelWidth: KW, stride: S, source } = pass;
  const taps = Math.ceil(KW / S);
  const { ob, pv } = pickBlock(pass.outChannels, pass.outWidth, pass.inChannels * KH * KW);
  const nXB = Math.ceil(pass.outWidth / (4 * pv));
  const input: PreparedLayout = {
    planes: pass.batch * pass.inChannels,
    height: source.height,
    width: source.width,
    rows: (pass.outHeight - 1) * S + KH,
    phases: S,
    vec4s: nXB * pv + Math.floor((taps - 1) / 4) + 1,
    padTop: source.padTop,
    padLeft: source.padLeft,
    dilation: source.dilation,
  };
  const NB = Math.min(pass.batch, Math.ceil(8 / nXB));
  const total = Math.ceil(pass.batch / NB) * NB * pass.outHeight * nXB;
  // From the first row r >= 0 with r ≡ padTop (mod D) to one past the last source row.
  const { dilation: D, padTop } = source;
  const rowLo = padTop >= 0 ? padTop : ((padTop % D) + D) % D;
  const rowHi = Math.max(rowLo, Math.min(input.rows, padTop + (source.height - 1) * D + 1));
  return { ob, pv, nXB, NB, total, input, rowLo, rowHi };
}

/**
 * Weight chunks for the uniform buffer: `NBC` blocks of `ob` output channels (`SW` floats per tap
 * and block) for `CCH` input channels each, at most 64 KiB; `nOC × nCC` chunks of `chunk` floats.
 */
export interface WeightChunks {
  SW: number;
  NBC: number;
  CCH: number;
  nOC: number;
  nCC: number;
  chunk: number;
}

export function weightChunks(pass: ConvPass, ob: number): WeightChunks {
  const Cc = pass.inChannels;
  const SW = Math.max(4, ob);
  const perChannel = pass.kernelHeight * pass.kernelWidth * SW;
  const nBlocks = Math.ceil(pass.outChannels / ob);
  let NBC: number;
  let CCH: number;
  if (Cc * perChannel * nBlocks <= UNIFORM_FLOATS) {
    [NBC, CCH] = [nBlocks, Cc];
  } else if (Cc * perChannel <= UNIFORM_FLOATS) {
    [NBC, CCH] = [Math.floor(UNIFORM_FLOATS / (Cc * perChannel)), Cc];
  } else {
    [NBC, CCH] = [1, Math.floor(UNIFORM_FLOATS / perChannel)];
  }
  const nOC = Math.ceil(nBlocks / NBC);
  const nCC = Math.ceil(Cc / CCH);
  return { SW, NBC, CCH, nOC, nCC, chunk: NBC * CCH * perChannel };
}

/**
 * The launch shape of the weight-gradient kernel: `TN` taps per invocation in `nMB` blocks of 8,
 * `nOB` blocks of 4 output channels, the images split into `groups` groups of `perGroup`
 * (summed by `reduce_groups` when more than one), `total` invocations, and the layouts of the
 * prepared input (padded, `stride` column phases) and gradient (rows padded to whole vec4s).
 */
export interface WeightGradPlan {
  TN: number;
  nMB: number;
  nOB: number;
  perGroup: number;
  groups: number;
  total: number;
  input: PreparedLayout;
  grad: PreparedLayout;
}

export function weightGradPlan(g: Conv2dGeometry): WeightGradPlan {
  const { batch: N, inChannels: C, outChannels: O, kernelHeight: KH, stride: S } = g;
  const taps = Math.ceil(g.kernelWidth / S);
  const TN = Math.min(8, taps);
  const nMB = Math.ceil(taps / 8);
  const R = Math.floor((TN + 6) / 4);
  const OW4 = Math.ceil(g.outWidth / 4);
  const input: PreparedLayout = {
    planes: N * C,
    height: g.inHeight,
    width: g.inWidth,
    rows: (g.outHeight - 1) * S + KH,
    phases: S,
    vec4s: 2 * (nMB - 1) + OW4 + R - 1,
    padTop: g.padding,
    padLeft: g.padding,
    dilation: 1,
  };
  const grad: PreparedLayout = {
    planes: N * O,
    height: g.outHeight,
    width: g.outWidth,
    rows: g.outHeight,
    phases: 1,
    vec4s: OW4,
    padTop: 0,
    padLeft: 0,
    dilation: 1,
  };
  const nOB = Math.ceil(O / 4);
  const perGroupItems = nOB * Math.ceil((C * KH) / weightGradRows(TN)) * S * nMB;
  // Enough invocations to keep every core busy, at least a few images per group when possible.
  const G = Math.max(1, Math.min(N, Math.ceil(2048 / perGroupItems)));
  const perGroup = Math.ceil(N / G);
  const groups = Math.ceil(N / perGroup);
  return { TN, nMB, nOB, perGroup, groups, total: groups * perGroupItems, input, grad };
}
