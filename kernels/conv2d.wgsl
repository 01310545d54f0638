// 2-D convolution (cross-correlation), NCHW f32: the forward pass, and the backward-to-input pass
// run as the same forward kernel on a dilated, padded gradient with flipped, transposed weights.
//
//   y[n, o, oy, ox] = bias[o] + sum_{c, ky, kx} x[n, c, oy*S + ky - pad, ox*S + kx - pad] * w[o, c, ky, kx]
//
// Formulation: direct convolution, register-blocked, no workgroup memory. On llvmpipe (the only
// adapter here) every storage-buffer load and store runs lane by lane, so memory operations, not
// multiply-adds, set the speed; barriers and workgroup memory are slower still (a shared-memory
// tiled implicit GEMM like TF.js's conv2d_mm measured ~12x slower). An im2col-style implicit GEMM
// without tiles would load every input KH*KW times; the direct form loads it about once per row
// window. The kernel therefore:
//  * runs on a prepared input `xq` (entry `prepare_input`) whose padding is materialised as zeros,
//    whose rows are 16-byte aligned, and whose columns are split into S phases
//    (xq[.., row, ph, j] = xpad[row, j*S + ph]), so the taps of one phase are contiguous in j for
//    consecutive outputs even when S > 1. An invocation owns PV*4 consecutive outputs of one row
//    for OB output channels; for each (c, ky, phase) it loads the row window as aligned vec4s once
//    and forms the shifted 4-vectors of every tap kx by register shuffles (free in SoA code), so
//    a 5-wide kernel costs about 4 vec4 loads per 160 multiply-adds (OB = 4, PV = 2). Blocks with
//    more than 32 accumulators spill and ran 2x slower; the op picks OB x PV among 4x2, 8x1,
//    2x4, 1x4 and 1x8 by predicted waste at the channel and column edges;
//  * reads the weights from a uniform buffer: all lanes of a workgroup share the output-channel
//    block, so each weight load is one scalar load broadcast to the lanes (about 35% faster than a
//    storage buffer here). The weights are first relaid out (entry `prepare_weight`) into blocks
//    [OB channels][c, ky, kx][OB padded to 4 or 8] of at most 64 KiB; the op copies each chunk
//    into the uniform buffer and dispatches once per chunk (accumulating over input-channel
//    chunks);
//  * skips the all-zero rows of xq (padding, and the rows inserted by dilation in the
//    backward-to-input pass) through loop bounds, not branches (llvmpipe executes both sides of a
//    branch under a mask); the lanes of a SIMD group share the output row so the bounds agree;
//  * stores whole vec4s when the output width is a multiple of 4 (entry `forward_vec4`);
//  * takes KW, S, D, OB and PV as pipeline constants, so the tap loops unroll and divisions by
//    them are cheap.

override KW: u32 = 5u; // kernel width
override S: u32 = 1u; // stride (= number of column phases of xq)
override OB: u32 = 4u; // output channels per invocation, 1..8
override PV: u32 = 2u; // vec4 groups of outputs per invocation (4*PV outputs of one row), 1..8

// ---------------------------------------------------------------------------------------------
// prepare_input: src [planes, H, W] -> xq [planes, Hq, S, Wq4 * 4] (vec4 elements), where
//   xq[pl, padT + iy*D, ph, j] = src[pl, iy, (j*S + ph - padL) / D] when the division is exact and
//   in range, else 0. D > 1 dilates (inserts D-1 zeros between inputs), which turns the strided
//   backward-to-input pass into a stride-1 convolution. Pads may be negative (crop).
// One invocation writes one input row (all its phases' columns, padding included). Rows of xq
// that hold no input row are not written: the forward kernel never reads them, and the op clears
// xq first where another kernel does. D is a pipeline constant (division by a constant).

override D: u32 = 1u;

struct PrepParams {
  rows: u32, // planes * nRows * phases
  H: u32,
  W: u32,
  Hq: u32,
  Wq4: u32,
  phases: u32,
  padT: u32, // bitcast i32
  padL: u32, // bitcast i32
  iy0: u32, // first source row that lands in xq
  nRows: u32, // source rows that land in xq
}

@group(0) @binding(0) var<uniform> pp: PrepParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> xq_out: array<vec4<f32>>;

struct PrepRow {
  valid: bool,
  src0: u32, // index of the source row's first element
  out0: u32, // index of the xq row's first vec4
  ph: u32,
}

fn prep_row(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> PrepRow {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  let ph = i % pp.phases;
  let iy = pp.iy0 + (i / pp.phases) % pp.nRows;
  let pl = i / (pp.phases * pp.nRows);
  let r = u32(bitcast<i32>(pp.padT) + i32(iy * D));
  return PrepRow(i < pp.rows, (pl * pp.H + iy) * pp.W, ((pl * pp.Hq + r) * pp.phases + ph) * pp.Wq4,
                 ph);
}

@compute @workgroup_size(64)
fn prepare_input(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let pr = prep_row(lid, wid, nwg);
  if (!pr.valid) { return; }
  // padded column of element k of vec4 jq: (jq*4 + k)*phases + ph
  let col0 = i32(pr.ph) - bitcast<i32>(pp.padL);
  let step = i32(pp.phases);
  for (var jq = 0u; jq < pp.Wq4; jq++) {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
      let pos = col0 + i32(jq * 4u + k) * step;
      let ix = u32(pos) / D;
      if (pos >= 0 && u32(pos) % D == 0u && ix < pp.W) { v[k] = src[pr.src0 + ix]; }
    }
    xq_out[pr.out0 + jq] = v;
  }
}

// The same for D = 1, one phase, padL and W multiples of 4: whole aligned vec4 copies.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn prepare_input_vec4(@builtin(local_invocation_index) lid: u32,
                      @builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
  let pr = prep_row(lid, wid, nwg);
  if (!pr.valid) { return; }
  let lead = bitcast<i32>(pp.padL) / 4;
  let w4 = i32(pp.W / 4u);
  let s0 = pr.src0 / 4u;
  for (var jq = 0u; jq < pp.Wq4; jq++) {
    let sj = i32(jq) - lead;
    var v = vec4<f32>(0.0);
    if (sj >= 0 && sj < w4) { v = src4[s0 + u32(sj)]; }
    xq_out[pr.out0 + jq] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// prepare_weight: w -> chunks for the uniform buffer. A chunk holds NBC blocks of OB output
// channels for CCH input channels; block `blk` of chunk (oc, cc) is
//   wt[blk, cl, ky, kx, k] = w'[(oc*NBC + blk)*OB + k, cc*CCH + cl, ky, kx]   (k < SW, SW = 4 or 8)
// zero for k >= OB and outside [0, O') x [0, C'), so that every tap of a block is SW/4 whole
// vec4s. w' = w ([O, C, KH, KW]) when flip = 0, and, when flip = 1, the weights of the
// backward-to-input convolution: w'[c, o, ky, kx] = w[o, c, KH-1-ky, KW-1-kx].

struct WeightParams {
  total: u32, // chunks * NBC * CCH * KH * KW * SW
  Oc: u32, // O' (output channels of the convolution that will read these weights)
  Cc: u32, // C'
  KH: u32,
  KWt: u32,
  OBt: u32,
  SW: u32,
  CCH: u32,
  nCC: u32,
  NBC: u32,
  flip: u32,
}

@group(0) @binding(0) var<uniform> wp: WeightParams;
@group(0) @binding(1) var<storage, read> w_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> wt_out: array<f32>;

@compute @workgroup_size(256)
fn prepare_weight(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= wp.total) { return; }
  let k = i % wp.SW;
  let tap = i / wp.SW;
  let kx = tap % wp.KWt;
  let ky = (tap / wp.KWt) % wp.KH;
  let cl = (tap / (wp.KWt * wp.KH)) % wp.CCH;
  let blk = (tap / (wp.KWt * wp.KH * wp.CCH)) % wp.NBC;
  let chunk = tap / (wp.KWt * wp.KH * wp.CCH * wp.NBC);
  let o = ((chunk / wp.nCC) * wp.NBC + blk) * wp.OBt + k;
  let c = (chunk % wp.nCC) * wp.CCH + cl;
  var v = 0.0;
  if (k < wp.OBt && o < wp.Oc && c < wp.Cc) {
    if (wp.flip == 0u) {
      v = w_in[((o * wp.Cc + c) * wp.KH + ky) * wp.KWt + kx];
    } else {
      // the original weight is [Cc, Oc, KH, KW]: its O is our C', its C our O'
      v = w_in[((c * wp.Oc + o) * wp.KH + (wp.KH - 1u - ky)) * wp.KWt + (wp.KWt - 1u - kx)];
    }
  }
  wt_out[i] = v;
}

// ---------------------------------------------------------------------------------------------
// forward: one dispatch per weight chunk (output channels o0 .. o0+OCH, input channels c0 ..).

struct ConvParams {
  Cx: u32, // channels of xq
  c0: u32, // first input channel of this chunk
  cn: u32, // input channels in this chunk
  Hq: u32,
  Wq4: u32,
  O: u32, // output channels of y
  o0: u32, // first output channel of this chunk
  on: u32, // output channels in this chunk
  ntap: u32, // taps per output-channel block in the uniform buffer (input channels * KH * KW)
  OH: u32,
  OW: u32,
  KH: u32,
  nOB: u32, // output-channel blocks in this chunk
  nXB: u32, // column blocks per output row
  total: u32, // ceil(N / NB) * NB * OH * nXB
  mode: u32, // bit 0: add bias; bit 1: accumulate into y
  N: u32,
  NB: u32, // images per block of the invocation order
  rowLo: u32, // first row of xq holding input (earlier rows are zero padding)
  rowHi: u32, // one past the last such row; between them only every D-th row is nonzero
}

const MAX_OB = 8u;
const MAX_PV = 8u;
override SW4: u32 = (OB + 3u) / 4u; // vec4s per tap of one output-channel block

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> xq: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> wt: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// The 4-vector starting `s` elements into the concatenation of a and b.
fn shifted(a: vec4<f32>, b: vec4<f32>, s: u32) -> vec4<f32> {
  switch s {
    case 0u: { return a; }
    case 1u: { return vec4(a.yzw, b.x); }
    case 2u: { return vec4(a.zw, b.xy); }
    default: { return vec4(a.w, b.xyz); }
  }
}

alias Acc = array<array<vec4<f32>, MAX_PV>, MAX_OB>;

// The outputs of one invocation: OB channels from ob * OB (within the chunk) of image n, row oy,
// columns xb * PV * 4 ...
struct Work {
  valid: bool,
  n: u32,
  oy: u32,
  xb: u32,
  ob: u32,
}

fn work_item(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> Work {
  // The output-channel block comes from the workgroup index alone, so weight reads are uniform.
  let g = wid.x + wid.y * nwg.x;
  let ob = g % p.nOB;
  let pb = (g / p.nOB) * 64u + lid;
  // Order: image block, output row, image within the block (NB images), column block. The
  // NB * nXB >= 8 lanes of a SIMD group share oy (so the row-skipping loop bounds below are
  // uniform), and a workgroup still covers neighbouring rows of few images (cache reuse).
  let xb = pb % p.nXB;
  let n = (pb / (p.nXB * p.NB * p.OH)) * p.NB + (pb / p.nXB) % p.NB;
  let oy = (pb / (p.nXB * p.NB)) % p.OH;
  return Work(pb < p.total && n < p.N, n, oy, xb, ob);
}

fn accumulate(wk: Work, acc: ptr<function, Acc>) {
  let r0 = wk.oy * S;
  var kyLo = select(0u, p.rowLo - r0, p.rowLo > r0);
  kyLo += (D - (r0 + kyLo - p.rowLo) % D) % D;
  let kyHi = min(p.KH, select(0u, p.rowHi - r0, p.rowHi > r0));
  for (var cl = 0u; cl < p.cn; cl++) {
    let plane = (wk.n * p.Cx + p.c0 + cl) * p.Hq;
    // Only the rows of xq that hold input (not padding, not rows inserted by dilation): loop
    // bounds rather than branches, since llvmpipe runs both sides of a branch under a mask.
    for (var ky = kyLo; ky < kyHi; ky += D) {
      let row = plane + r0 + ky;
      let tap0 = (cl * p.KH + ky) * KW;
      for (var ph = 0u; ph < S; ph++) {
        let taps = (KW - ph + S - 1u) / S; // kx = ph + m*S for m < taps
        let rb = (row * S + ph) * p.Wq4 + wk.xb * PV;
        var r: array<vec4<f32>, MAX_PV + 1u>;
        for (var q = 0u; q < PV; q++) { r[q] = xq[rb + q]; }
        for (var mq = 0u; mq < taps; mq += 4u) {
          r[PV] = xq[rb + mq / 4u + PV];
          for (var s = 0u; s < 4u; s++) {
            if (mq + s < taps) {
              // the OB weights of this tap: SW/4 whole vec4s of the uniform buffer
              let wi = (wk.ob * p.ntap + tap0 + ph + (mq + s) * S) * SW4;
              var wv: array<vec4<f32>, MAX_OB / 4u>;
              for (var o4 = 0u; o4 < SW4; o4++) { wv[o4] = wt[wi + o4]; }
              for (var o = 0u; o < OB; o++) {
                let wo = wv[o / 4u][o % 4u];
                for (var q = 0u; q < PV; q++) {
                  (*acc)[o][q] += wo * shifted(r[q], r[q + 1u], s);
                }
              }
            }
          }
          for (var q = 0u; q < PV; q++) { r[q] = r[q + 1u]; }
        }
      }
    }
  }
}

// Any output width: scalar stores.
@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let wk = work_item(lid, wid, nwg);
  if (!wk.valid) { return; }
  var acc: Acc;
  accumulate(wk, &acc);
  let planeY = p.OH * p.OW;
  let ox0 = wk.xb * PV * 4u;
  let add = (p.mode & 2u) != 0u;
  for (var o = 0u; o < OB; o++) {
    let ol = wk.ob * OB + o;
    if (ol < p.on) {
      let oc = p.o0 + ol;
      let yb = (wk.n * p.O + oc) * planeY + wk.oy * p.OW + ox0;
      var b = 0.0;
      if ((p.mode & 1u) != 0u) { b = bias[oc]; }
      for (var q = 0u; q < PV; q++) {
        let v = acc[o][q] + b;
        for (var k = 0u; k < 4u; k++) {
          let j = q * 4u + k;
          if (ox0 + j < p.OW) {
            var t = v[k];
            if (add) { t += y[yb + j]; }
            y[yb + j] = t;
          }
        }
      }
    }
  }
}

// Output width a multiple of 4: every group of 4 outputs is one aligned vec4 store (stores run
// lane by lane on llvmpipe, so this saves about a quarter of the time of small convolutions).
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn forward_vec4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let wk = work_item(lid, wid, nwg);
  if (!wk.valid) { return; }
  var acc: Acc;
  accumulate(wk, &acc);
  let planeY = p.OH * p.OW;
  let ox0 = wk.xb * PV * 4u;
  let add = (p.mode & 2u) != 0u;
  for (var o = 0u; o < OB; o++) {
    let ol = wk.ob * OB + o;
    if (ol < p.on) {
      let oc = p.o0 + ol;
      let yb = ((wk.n * p.O + oc) * planeY + wk.oy * p.OW + ox0) / 4u;
      var b = 0.0;
      if ((p.mode & 1u) != 0u) { b = bias[oc]; }
      for (var q = 0u; q < PV; q++) {
        if (ox0 + q * 4u < p.OW) {
          var v = acc[o][q] + b;
          if (add) { v += y4[yb + q]; }
          y4[yb + q] = v;
        }
      }
    }
  }
}
