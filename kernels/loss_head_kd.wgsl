// The knowledge-distillation loss through the student's last fully connected layer (Hinton et
// al. 2015), in two passes instead of a matmul, a crop, the loss, two pads and two backward
// matmuls, a pad and a column sum:
//
//   z_n  = W h_n + b                                     (W: [K, M], h_n: [M], b: [K])
//   loss = (tau² / N) sum_n CE(softmax(t_n / tau), softmax(z_n / tau))
//   dz_n = (tau / N) (sum_k pt_nk · ps_n − pt_n)          (= tau (ps − pt) / N for rows of pt summing to 1)
//   dh_n = W^T dz_n,   dW = sum_n dz_n h_n^T,   db = sum_n dz_n
//
// `linear_kd`: one row per invocation; writes dz, dh and the row's CE into `part` (summed by
// kernels/loss_reduce.wgsl). `linear_kd_params`: one weight (or bias) element per invocation,
// summing over the rows in a fixed order (deterministic). The logits are never stored. KC (the
// number of classes, <= 32) is a pipeline constant so the per-row loops over classes unroll.
// The softmax and CE use the stable forms of kernels/loss.wgsl (`kd`).

override KC: u32 = 10u;
const MAX_K: u32 = 32u;

struct Params {
  n: u32, // rows N
  m: u32, // input features M
  tau: f32,
  grad_scale: f32, // tau / N
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>; // teacher logits [N, K]
@group(0) @binding(2) var<storage, read> h: array<f32>; // student layer input [N, M]
@group(0) @binding(3) var<storage, read> w: array<f32>; // [K, M]
@group(0) @binding(4) var<storage, read> bias: array<f32>; // [K]
@group(0) @binding(5) var<storage, read_write> dz: array<f32>; // [N, K]
@group(0) @binding(6) var<storage, read_write> dh: array<f32>; // [N, M]
@group(0) @binding(7) var<storage, read_write> part: array<f32>; // [N]

@compute @workgroup_size(64)
fn linear_kd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (r >= p.n) { return; }
  var z: array<f32, MAX_K>;
  for (var j = 0u; j < KC; j++) { z[j] = select(0.0, bias[j], p.has_bias != 0u); }
  let hb = r * p.m;
  for (var i = 0u; i < p.m; i++) {
    let hi = h[hb + i];
    for (var j = 0u; j < KC; j++) { z[j] = fma(hi, w[j * p.m + i], z[j]); }
  }
  let tb = r * KC;
  var mt = t[tb];
  var ms = z[0];
  for (var j = 1u; j < KC; j++) {
    mt = max(mt, t[tb + j]);
    ms = max(ms, z[j]);
  }
  var st = 0.0;
  var ss = 0.0;
  for (var j = 0u; j < KC; j++) {
    st += exp((t[tb + j] - mt) / p.tau);
    ss += exp((z[j] - ms) / p.tau);
  }
  let lse_s = log(ss);
  var pt: array<f32, MAX_K>;
  var spt = 0.0;
  var ce = 0.0;
  for (var j = 0u; j < KC; j++) {
    pt[j] = exp((t[tb + j] - mt) / p.tau) / st;
    spt += pt[j];
    ce -= pt[j] * ((z[j] - ms) / p.tau - lse_s);
  }
  part[r] = ce;
  var g: array<f32, MAX_K>;
  for (var j = 0u; j < KC; j++) {
    g[j] = (spt * exp((z[j] - ms) / p.tau) / ss - pt[j]) * p.grad_scale;
    dz[tb + j] = g[j];
  }
  for (var i = 0u; i < p.m; i++) {
    var s = 0.0;
    for (var j = 0u; j < KC; j++) { s = fma(g[j], w[j * p.m + i], s); }
    dh[hb + i] = s;
  }
}

@group(0) @binding(1) var<storage, read> dz_in: array<f32>; // [N, K]
@group(0) @binding(2) var<storage, read> h_in: array<f32>; // [N, M]
@group(0) @binding(3) var<storage, read_write> dw: array<f32>; // [K, M]
@group(0) @binding(4) var<storage, read_write> db: array<f32>; // [K]

@compute @workgroup_size(64)
fn linear_kd_params(@builtin(local_invocation_index) lid: u32,
                    @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = (wid.x + wid.y * nwg.x) * 64u + lid;
  let nw = KC * p.m;
  if (e < nw) {
    let j = e / p.m;
    let i = e % p.m;
    var s = 0.0;
    for (var r = 0u; r < p.n; r++) { s = fma(dz_in[r * KC + j], h_in[r * p.m + i], s); }
    dw[e] = s;
  } else if (e < nw + KC && p.has_bias != 0u) {
    let j = e - nw;
    var s = 0.0;
    for (var r = 0u; r < p.n; r++) { s += dz_in[r * KC + j]; }
    db[j] = s;
  }
}
