// Per-row (or per-chunk) stage of the batch-mean losses, with the loss gradient fused in:
// each invocation writes the gradient of the batch mean w.r.t. its inputs and one partial loss
// into `part`; kernels/loss_reduce.wgsl then sums `part` in one workgroup. Splitting the work
// this way keeps the expensive part (exp/log over rows, 1M-element activations) spread over
// many workgroups without barriers, and leaves a single, deterministic reduction.
//
// kl_div  (one row per invocation; x = z logits, t = p target rows; scale = 1 / (N tau)):
//   part[n] = sum_k p_k (log p_k - log q_k),  q = softmax(z_n / tau), terms with p_k = 0 are 0;
//   grad    = (sum_k p_k · q - p) / (N tau)   (= (q - p) / (N tau) when rows of p sum to 1).
// kd      (one row per invocation; x = student logits s, t = teacher logits; scale = tau / N):
//   part[n] = -sum_k pt_k log ps_k,  pt = softmax(t_n / tau), ps = softmax(s_n / tau);
//   grad    = (sum_k pt_k · ps - pt) · tau / N   (the tau^2 factor times the 1/tau of softmax).
// kd_kl   (as kd, plus grad_t; scale = tau / N): the KL form of the KD loss, differentiable in
//   both logits: part[n] = sum_k pt_k (log pt_k - log ps_k);
//   grad   = (ps - pt) · tau / N    (w.r.t. s; kd's gradient, pt a softmax so sum_k pt_k = 1);
//   grad_t = pt ⊙ (d - sum_k pt_k d_k) · tau / N,  d = log pt - log ps  (w.r.t. t).
// act_abs (CHUNK·256 elements per workgroup, strided by 256; x = activations a, scale = 1/N or
//   1/numel): part[slot] = sum |a| over the invocation's elements, grad = -scale · sign(a).
//
// log q and log ps are formed as (z - max)/tau - log S with S = sum exp((z - max)/tau) >= 1, so
// logits of +-1e4 at tau = 1 give large but finite logs, never log(0). log p uses
// max(p, smallest normal) so a subnormal p (flushed to zero by some devices) cannot give -inf.
//
// Bindings (dispatch order): x, grad, part, t (t unused by act_abs), grad_t (kd_kl only).
// Params: n (rows, or elements for act_abs), k (columns), m (partial slots, act_abs only),
// tau, scale (gradient scale).

struct Params {
  n: u32,
  k: u32,
  m: u32,
  tau: f32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> t: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_t: array<f32>;

const MIN_NORMAL: f32 = 1.17549435e-38;
const CHUNK: u32 = 32u;

fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// (max_j v_j, sum_j exp((v_j - max) / tau)) of the row at `base` of x, and of t: the stable
// softmax's shift and normaliser.
fn row_max_sum_x(base: u32) -> vec2<f32> {
  var m = x[base];
  for (var j = 1u; j < p.k; j++) { m = max(m, x[base + j]); }
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { s += exp((x[base + j] - m) / p.tau); }
  return vec2<f32>(m, s);
}

fn row_max_sum_t(base: u32) -> vec2<f32> {
  var m = t[base];
  for (var j = 1u; j < p.k; j++) { m = max(m, t[base + j]); }
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { s += exp((t[base + j] - m) / p.tau); }
  return vec2<f32>(m, s);
}

// KL(p_n || softmax(z_n / tau)) and its gradient w.r.t. z_n.
@compute @workgroup_size(64)
fn kl_div(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wg_index(wid, nwg) * 64u + lid;
  if (r >= p.n) { return; }
  let base = r * p.k;
  let zs = row_max_sum_x(base);
  let mz = zs.x;
  let s = zs.y;
  let lse = log(s);
  let inv = 1.0 / s;
  var sp = 0.0;
  var loss = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let pj = t[base + j];
    sp += pj;
    if (pj > 0.0) {
      let lq = (x[base + j] - mz) / p.tau - lse;
      loss += pj * (log(max(pj, MIN_NORMAL)) - lq);
    }
  }
  part[r] = loss;
  for (var j = 0u; j < p.k; j++) {
    let q = exp((x[base + j] - mz) / p.tau) * inv;
    grad[base + j] = (sp * q - t[base + j]) * p.scale;
  }
}

// CE(softmax(t_n / tau), softmax(s_n / tau)) and its gradient w.r.t. s_n (times tau^2 / N).
@compute @workgroup_size(64)
fn kd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
      @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wg_index(wid, nwg) * 64u + lid;
  if (r >= p.n) { return; }
  let base = r * p.k;
  let ts = row_max_sum_t(base);
  let xs = row_max_sum_x(base);
  let mt = ts.x;
  let st = ts.y;
  let ms = xs.x;
  let ss = xs.y;
  let inv_t = 1.0 / st;
  let inv_s = 1.0 / ss;
  let lse_s = log(ss);
  var spt = 0.0;
  var ce = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let pt = exp((t[base + j] - mt) / p.tau) * inv_t;
    spt += pt;
    ce -= pt * ((x[base + j] - ms) / p.tau - lse_s);
  }
  part[r] = ce;
  for (var j = 0u; j < p.k; j++) {
    let pt = exp((t[base + j] - mt) / p.tau) * inv_t;
    let ps = exp((x[base + j] - ms) / p.tau) * inv_s;
    grad[base + j] = (spt * ps - pt) * p.scale;
  }
}

// tau^2 · KL(softmax(t_n / tau) || softmax(s_n / tau)) and its gradients w.r.t. s_n and t_n.
@compute @workgroup_size(64)
fn kd_kl(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wg_index(wid, nwg) * 64u + lid;
  if (r >= p.n) { return; }
  let base = r * p.k;
  let ts = row_max_sum_t(base);
  let xs = row_max_sum_x(base);
  let mt = ts.x;
  let st = ts.y;
  let ms = xs.x;
  let ss = xs.y;
  let lse_t = log(st);
  let lse_s = log(ss);
  var kl = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let lt = (t[base + j] - mt) / p.tau - lse_t;
    let ls = (x[base + j] - ms) / p.tau - lse_s;
    kl += exp(lt) * (lt - ls);
  }
  part[r] = kl;
  for (var j = 0u; j < p.k; j++) {
    let lt = (t[base + j] - mt) / p.tau - lse_t;
    let ls = (x[base + j] - ms) / p.tau - lse_s;
    let pt = exp(lt);
    grad[base + j] = (exp(ls) - pt) * p.scale;
    grad_t[base + j] = pt * (lt - ls - kl) * p.scale;
  }
}

// Partial sums of |a| over CHUNK elements per invocation, and grad = -scale * sign(a).
@compute @workgroup_size(256)
fn act_abs(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wg_index(wid, nwg);
  let slot = w * 256u + lid;
  if (slot >= p.m) { return; }
  let base = w * 256u * CHUNK + lid;
  var s = 0.0;
  for (var j = 0u; j < CHUNK; j++) {
    let i = base + j * 256u;
    if (i < p.n) {
      let a = x[i];
      s += abs(a);
      grad[i] = -p.scale * sign(a);
    }
  }
  part[slot] = s;
}
