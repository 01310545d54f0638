// 2-D convolution, gradients of the weights and of the bias (NCHW f32):
//
//   gw[o, c, ky, kx] = sum_{n, oy, ox} gy[n, o, oy, ox] * x[n, c, oy*S + ky - pad, ox*S + kx - pad]
//   gb[o]            = sum_{n, oy, ox} gy[n, o, oy, ox]
//
// Formulation: a split reduction, register-blocked, no workgroup memory or atomics. The sum runs
// over N*OH*OW terms (large) into O*C*KH*KW weights (small), so the images are split into G
// groups; one invocation owns 4 output channels x RW consecutive (c, ky) rows x one column phase
// x up to 8 taps kx for one group and loops over the group's pixels; `reduce_groups` then adds
// the G partial results (deterministic). Loads set the speed on llvmpipe (each runs lane by lane):
//  * x is the same prepared input as the forward pass (`prepare_input` in conv2d.wgsl: padding
//    materialised, aligned rows, columns split into S phases) and gy is padded to whole vec4s per
//    row with zeros (the zero columns make the ragged end of a row contribute nothing);
//  * per 4 output columns the invocation loads 4 vec4s of gy (one per output channel, shared by
//    its RW rows) and one new vec4 of each input row, and forms the shifted inputs of every tap by
//    register shuffles: 4 + RW loads per 16*RW*taps multiply-adds (9 per 400 for 5x5, RW = 5);
//  * KW, S, the tap count TN and the row count RW are pipeline constants, so the loops unroll.
//    WGSL sizes function-scope arrays only by const-expressions, so the register arrays are sized
//    for MAX_RW rows and declared once per invocation (declared inside the row loops with
//    RW < MAX_RW, llvmpipe kept them in memory, several times slower).

override KW: u32 = 5u; // kernel width
override S: u32 = 1u; // stride (= column phases of xq)
override TN: u32 = 5u; // taps per invocation: min(8, ceil(KW / S))
override RW: u32 = 5u; // (c, ky) rows per invocation, 1..MAX_RW
const MAX_RW = 5u;
const MAX_TN = 8u;

struct Params {
  C: u32,
  O: u32,
  Hq: u32, // rows of xq per plane
  Wq4: u32, // vec4s per xq phase row
  OH: u32,
  OW4: u32, // vec4s per gq row
  KH: u32,
  nMB: u32, // tap blocks of 8
  nOB: u32, // output-channel blocks of 4
  N: u32,
  perGroup: u32, // images per group
  total: u32, // invocations
  wsize: u32, // O * C * KH * KW
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xq: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gq: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

fn shifted(a: vec4<f32>, b: vec4<f32>, s: u32) -> vec4<f32> {
  switch s {
    case 0u: { return a; }
    case 1u: { return vec4(a.yzw, b.x); }
    case 2u: { return vec4(a.zw, b.xy); }
    default: { return vec4(a.w, b.xyz); }
  }
}

@compute @workgroup_size(64)
fn weight_grad(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= p.total) { return; }
  // item = (group, o block, tap block, phase, block of RW consecutive (c, ky) rows)
  let nRB = (p.C * p.KH + RW - 1u) / RW;
  let rb = i % nRB;
  let ph = (i / nRB) % S;
  let mb = (i / (nRB * S)) % p.nMB;
  let ob = (i / (nRB * S * p.nMB)) % p.nOB;
  let g = i / (nRB * S * p.nMB * p.nOB);
  let o0 = ob * 4u;
  let oLast = p.O - 1u;
  let lastRow = p.C * p.KH - 1u;
  // vec4s in the input window of 4 outputs x TN taps
  let R = (TN + 6u) / 4u;

  var acc: array<array<vec4<f32>, MAX_TN>, MAX_RW>;
  // Per row of the window: its first vec4 in xq, and its vec4s (set before every read).
  var xrow: array<u32, MAX_RW>;
  var r: array<array<vec4<f32>, 4>, MAX_RW>;
  let nEnd = min(p.N, (g + 1u) * p.perGroup);
  for (var n = g * p.perGroup; n < nEnd; n++) {
    let gPlane = n * p.O;
    for (var oy = 0u; oy < p.OH; oy++) {
      for (var k = 0u; k < RW; k++) {
        let q = min(rb * RW + k, lastRow); // rows past the end repeat the last (not written)
        let c = q / p.KH;
        let ky = q % p.KH;
        xrow[k] = (((n * p.C + c) * p.Hq + oy * S + ky) * S + ph) * p.Wq4 + mb * 2u;
      }
      let g0b = ((gPlane + min(o0, oLast)) * p.OH + oy) * p.OW4;
      let g1b = ((gPlane + min(o0 + 1u, oLast)) * p.OH + oy) * p.OW4;
      let g2b = ((gPlane + min(o0 + 2u, oLast)) * p.OH + oy) * p.OW4;
      let g3b = ((gPlane + min(o0 + 3u, oLast)) * p.OH + oy) * p.OW4;
      for (var k = 0u; k < RW; k++) {
        for (var q = 0u; q + 1u < R; q++) { r[k][q] = xq[xrow[k] + q]; }
      }
      for (var jq = 0u; jq < p.OW4; jq++) {
        let gv0 = gq[g0b + jq];
        let gv1 = gq[g1b + jq];
        let gv2 = gq[g2b + jq];
        let gv3 = gq[g3b + jq];
        for (var k = 0u; k < RW; k++) {
          r[k][R - 1u] = xq[xrow[k] + jq + R - 1u];
          for (var t = 0u; t < TN; t++) {
            let v = shifted(r[k][t / 4u], r[k][t / 4u + 1u], t % 4u);
            acc[k][t] += vec4(dot(gv0, v), dot(gv1, v), dot(gv2, v), dot(gv3, v));
          }
          for (var q = 0u; q + 1u < R; q++) { r[k][q] = r[k][q + 1u]; }
        }
      }
    }
  }

  let base = g * p.wsize;
  for (var k = 0u; k < RW; k++) {
    let q = rb * RW + k;
    if (q <= lastRow) {
      let c = q / p.KH;
      let ky = q % p.KH;
      for (var t = 0u; t < TN; t++) {
        let kx = ph + (mb * 8u + t) * S;
        if (kx < KW) {
          for (var j = 0u; j < 4u; j++) {
            let o = o0 + j;
            if (o < p.O) { part[base + ((o * p.C + c) * p.KH + ky) * KW + kx] = acc[k][t][j]; }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// bias_grad: part[g * O + o] = sum over the images of group g and their pixels of gy[n, o, :, :].

struct BiasParams {
  O: u32,
  plane: u32, // OH * OW
  N: u32,
  perGroup: u32,
  total: u32, // G * O
}

@group(0) @binding(0) var<uniform> bp: BiasParams;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> bpart: array<f32>;

@compute @workgroup_size(64)
fn bias_grad(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= bp.total) { return; }
  let o = i % bp.O;
  let g = i / bp.O;
  var s = 0.0;
  let nEnd = min(bp.N, (g + 1u) * bp.perGroup);
  for (var n = g * bp.perGroup; n < nEnd; n++) {
    let b = (n * bp.O + o) * bp.plane;
    var t = 0.0;
    for (var k = 0u; k < bp.plane; k++) { t += gy[b + k]; }
    s += t;
  }
  bpart[i] = s;
}

// ---------------------------------------------------------------------------------------------
// reduce_groups: out[i] = sum_g part[g * size + i] (the second stage of both reductions).

struct ReduceParams {
  size: u32,
  groups: u32,
}

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn reduce_groups(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= rp.size) { return; }
  var s = 0.0;
  for (var g = 0u; g < rp.groups; g++) { s += parts[g * rp.size + i]; }
  out[i] = s;
}
