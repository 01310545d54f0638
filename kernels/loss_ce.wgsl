// Per-row stage of the cross-entropy loss mean_n -log softmax(z_n)[label_n] with its gradient
// fused in (kernels/loss_reduce.wgsl sums the rows): one row per invocation,
//   part[n] = log S - (z_label - max),  S = sum_k exp(z_k - max)  (stable: S in [1, K]),
//   grad    = (softmax(z_n) - onehot(label_n)) * scale,  scale = 1 / N.
// A label >= K cannot be checked on the CPU without a readback, so it makes that row's loss NaN
// (and its gradient plain softmax / N): the batch loss then shows the error instead of hiding it.
// Kept apart from kernels/loss.wgsl because binding 4 holds u32 labels here.
//
// Bindings (dispatch order): x (z logits), grad, part, labels. Params: n rows, k columns, scale.

struct Params {
  n: u32,
  k: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<u32>;

@compute @workgroup_size(64)
fn cross_entropy(@builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (r >= p.n) { return; }
  let base = r * p.k;
  var m = x[base];
  for (var j = 1u; j < p.k; j++) { m = max(m, x[base + j]); }
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { s += exp(x[base + j] - m); }
  let inv = 1.0 / s;
  let label = labels[r];
  var nan_bits = 0x7fc00000u;
  if (label < p.k) {
    part[r] = log(s) - (x[base + label] - m);
  } else {
    part[r] = bitcast<f32>(nan_bits);
  }
  for (var j = 0u; j < p.k; j++) {
    let q = exp(x[base + j] - m) * inv;
    grad[base + j] = (q - select(0.0, 1.0, j == label)) * p.scale;
  }
}
