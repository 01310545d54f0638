// 2-D convolution (cross-correlation), NCHW f32: the forward pass, and the backward-to-input pass
// run as the same forward kernel on a dilated, padded gradient with flipped, transposed weights.
//
//   y[n, o, oy, ox] = bias[o] + sum_{c, ky, kx} x[n, c, oy*S + ky - pad, ox*S + kx - pad] * w[o, c, ky, kx]
//
// Formulation: direct convolution, register-blocked, no workgroup memory. On llvmpipe (the only
// adapter here) every storage-buffer load is executed lane by lane, so loads, not multiply-adds,
// set the speed; barriers and workgroup memory are slower still. The kernel therefore:
//  * runs on a prepared input `xq` (entry `prepare_input`) whose padding is materialised as zeros,
//    whose rows are 16-byte aligned, and whose columns are split into S phases
//    (xq[.., row, ph, j] = xpad[row, j*S + ph]), so the taps of one phase are contiguous in j for
//    consecutive outputs even when S > 1. An invocation owns PV*4 consecutive outputs of one row for
//    OB output channels; for each (c, ky, phase) it loads the row window as aligned vec4s once and
//    forms the shifted 4-vectors of every tap kx by register shuffles (free in SoA code), so a
//    5-wide kernel costs about 4 vec4 loads per 160 multiply-adds (OB = 4, PV = 2);
//  * reads the weights from a uniform buffer: all lanes of a workgroup share the output-channel
//    block, so each weight load is one scalar load broadcast to the lanes (about 35% faster than a
//    storage buffer here). The weights are first relaid out (entry `prepare_weight`) to
//    [c, ky, kx, o] in chunks of at most 64 KiB; the op dispatches once per chunk;
//  * takes KW, S, OB and PV as pipeline constants, so the tap loops unroll and the register arrays
//    (sized for the largest block) keep only the used entries.
// An implicit-GEMM kernel with shared-memory tiles (TF.js's conv2d_mm) is the better choice on
// real GPUs; it measured about 12x slower on llvmpipe.

override KW: u32 = 5u; // kernel width
override S: u32 = 1u; // stride (= number of column phases of xq)
override OB: u32 = 4u; // output channels per invocation, 1..8
override PV: u32 = 2u; // vec4 groups of outputs per invocation (4*PV outputs of one row), 1..4

// ---------------------------------------------------------------------------------------------
// prepare_input: src [planes, H, W] -> xq [planes, Hq, S, Wq4 * 4] (vec4 elements), where
//   xq[pl, r, ph, j] = src[pl, (r - padT) / D, (j*S + ph - padL) / D] when both divisions are
//   exact and in range, else 0. D > 1 dilates (inserts D-1 zeros between inputs), which turns the
//   strided backward-to-input pass into a stride-1 convolution. Pads may be negative (crop).
// One invocation writes one row of one phase; D is a pipeline constant (division by a constant).

override D: u32 = 1u;

struct PrepParams {
  rows: u32, // planes * Hq * phases
  H: u32,
  W: u32,
  Hq: u32,
  Wq4: u32,
  phases: u32,
  padT: u32, // bitcast i32
  padL: u32, // bitcast i32
}

@group(0) @binding(0) var<uniform> pp: PrepParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> xq_out: array<vec4<f32>>;

// The source index of padded, dilated position `pos`, or -1 for an inserted zero.
fn undilate(pos: i32, extent: u32) -> i32 {
  if (pos < 0 || u32(pos) % D != 0u) { return -1; }
  let v = u32(pos) / D;
  return select(-1, i32(v), v < extent);
}

@compute @workgroup_size(64)
fn prepare_input(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= pp.rows) { return; }
  let ph = i % pp.phases;
  let r = (i / pp.phases) % pp.Hq;
  let pl = i / (pp.phases * pp.Hq);
  let out0 = i * pp.Wq4;
  let iy = undilate(i32(r) - bitcast<i32>(pp.padT), pp.H);
  if (iy < 0) {
    for (var jq = 0u; jq < pp.Wq4; jq++) { xq_out[out0 + jq] = vec4<f32>(0.0); }
    return;
  }
  let rowBase = (pl * pp.H + u32(iy)) * pp.W;
  // padded column of element k of vec4 jq: (jq*4 + k)*phases + ph
  let col0 = i32(ph) - bitcast<i32>(pp.padL);
  let step = i32(pp.phases);
  for (var jq = 0u; jq < pp.Wq4; jq++) {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
      let ix = undilate(col0 + i32(jq * 4u + k) * step, pp.W);
      if (ix >= 0) { v[k] = src[rowBase + u32(ix)]; }
    }
    xq_out[out0 + jq] = v;
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
  total: u32, // N * OH * nXB
  mode: u32, // bit 0: add bias; bit 1: accumulate into y
}

const MAX_OB = 8u;
const MAX_PV = 4u;
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

@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  // The output-channel block comes from the workgroup index alone, so weight reads are uniform.
  let g = wid.x + wid.y * nwg.x;
  let ob = g % p.nOB;
  let pb = (g / p.nOB) * 64u + lid;
  if (pb >= p.total) { return; }
  let xb = pb % p.nXB;
  let oy = (pb / p.nXB) % p.OH;
  let n = pb / (p.nXB * p.OH);
  let ol0 = ob * OB; // first output channel of this invocation, relative to the chunk

  var acc: array<array<vec4<f32>, MAX_PV>, MAX_OB>;
  for (var cl = 0u; cl < p.cn; cl++) {
    let plane = (n * p.Cx + p.c0 + cl) * p.Hq;
    for (var ky = 0u; ky < p.KH; ky++) {
      let row = plane + oy * S + ky;
      let tap0 = (cl * p.KH + ky) * KW;
      for (var ph = 0u; ph < S; ph++) {
        let taps = (KW - ph + S - 1u) / S; // kx = ph + m*S for m < taps
        let rb = (row * S + ph) * p.Wq4 + xb * PV;
        var r: array<vec4<f32>, MAX_PV + 1u>;
        for (var q = 0u; q < PV; q++) { r[q] = xq[rb + q]; }
        for (var mq = 0u; mq < taps; mq += 4u) {
          r[PV] = xq[rb + mq / 4u + PV];
          for (var s = 0u; s < 4u; s++) {
            if (mq + s < taps) {
              // the OB weights of this tap: SW/4 whole vec4s of the uniform buffer
              let wi = (ob * p.ntap + tap0 + ph + (mq + s) * S) * SW4;
              var wv: array<vec4<f32>, MAX_OB / 4u>;
              for (var o4 = 0u; o4 < SW4; o4++) { wv[o4] = wt[wi + o4]; }
              for (var o = 0u; o < OB; o++) {
                let wo = wv[o / 4u][o % 4u];
                for (var q = 0u; q < PV; q++) {
                  acc[o][q] += wo * shifted(r[q], r[q + 1u], s);
                }
              }
            }
          }
          for (var q = 0u; q < PV; q++) { r[q] = r[q + 1u]; }
        }
      }
    }
  }

  let planeY = p.OH * p.OW;
  let ox0 = xb * PV * 4u;
  for (var o = 0u; o < OB; o++) {
    let ol = ol0 + o;
    if (ol < p.on) {
      let oc = p.o0 + ol;
      let yb = (n * p.O + oc) * planeY + oy * p.OW + ox0;
      var b = 0.0;
      if ((p.mode & 1u) != 0u) { b = bias[oc]; }
      let accumulate = (p.mode & 2u) != 0u;
      for (var q = 0u; q < PV; q++) {
        let v = acc[o][q] + b;
        for (var k = 0u; k < 4u; k++) {
          let j = q * 4u + k;
          if (ox0 + j < p.OW) {
            var t = v[k];
            if (accumulate) { t += y[yb + j]; }
            y[yb + j] = t;
          }
        }
      }
    }
  }
}
