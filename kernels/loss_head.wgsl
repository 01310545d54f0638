// The synthesis loss through the teacher's last fully connected layer, in one pass: logits,
// softmax at temperature tau, KL divergence to the targets, its gradient, and that gradient
// carried back through the layer to the layer's input.
//
//   z_n = W x_n + b                      (W: [K, M], x_n: [M], b: [K])
//   loss = (1/N) sum_n sum_k p_nk (log p_nk - log q_nk),  q_n = softmax(z_n / tau), 0 log 0 = 0
//   dz_n = (sum_k p_nk · q_n - p_n) / (N tau)    (= (q_n - p_n) / (N tau) for rows summing to 1)
//   dx_n = W^T dz_n
//
// One workgroup of 256 invocations; invocation i handles rows i, i + 256, ... and keeps its
// partial loss; a tree reduction in workgroup memory sums the partials in a fixed order, so the
// loss is deterministic and needs no second pass. The work is small (LeNet-5: 84 x 10 per row,
// twice), so one workgroup costs less than the separate matmul, padding, crop, loss and
// reduction passes it replaces. KC (the number of classes, <= 32) is a pipeline constant so that
// the per-row loops over classes unroll. log q uses the stable (z - max)/tau - log S form and
// log p uses max(p, smallest normal), as kernels/loss.wgsl.

override KC: u32 = 10u;
const MAX_K: u32 = 32u;
const MIN_NORMAL: f32 = 1.17549435e-38;

struct Params {
  n: u32, // rows N
  m: u32, // input features M
  tau: f32,
  grad_scale: f32, // 1 / (N tau)
  loss_scale: f32, // 1 / N
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> soft: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;

var<workgroup> partial: array<f32, 256>;

// KL(p_r || softmax(z_r / tau)) of row r; writes dz (already scaled) into `g`.
fn row_loss(r: u32, g: ptr<function, array<f32, MAX_K>>) -> f32 {
  var z: array<f32, MAX_K>;
  for (var j = 0u; j < KC; j++) { z[j] = select(0.0, bias[j], p.has_bias != 0u); }
  let xb = r * p.m;
  for (var i = 0u; i < p.m; i++) {
    let xi = x[xb + i];
    for (var j = 0u; j < KC; j++) { z[j] = fma(xi, w[j * p.m + i], z[j]); }
  }
  var mz = z[0];
  for (var j = 1u; j < KC; j++) { mz = max(mz, z[j]); }
  var s = 0.0;
  for (var j = 0u; j < KC; j++) { s += exp((z[j] - mz) / p.tau); }
  let lse = log(s);
  var sp = 0.0;
  var kl = 0.0;
  let tb = r * KC;
  for (var j = 0u; j < KC; j++) {
    let pj = soft[tb + j];
    sp += pj;
    if (pj > 0.0) { kl += pj * (log(max(pj, MIN_NORMAL)) - ((z[j] - mz) / p.tau - lse)); }
  }
  let inv = 1.0 / s;
  for (var j = 0u; j < KC; j++) {
    (*g)[j] = (sp * exp((z[j] - mz) / p.tau) * inv - soft[tb + j]) * p.grad_scale;
  }
  return kl;
}

@compute @workgroup_size(256)
fn linear_kl_div(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var r = lid; r < p.n; r += 256u) {
    var g: array<f32, MAX_K>;
    acc += row_loss(r, &g);
    let xb = r * p.m;
    for (var i = 0u; i < p.m; i++) {
      var s = 0.0;
      for (var j = 0u; j < KC; j++) { s = fma(g[j], w[j * p.m + i], s); }
      dx[xb + i] = s;
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h /= 2u) {
    if (lid < h) { partial[lid] += partial[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { loss[0] = partial[0] * p.loss_scale; }
}
