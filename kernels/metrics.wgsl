// Classification metrics over logits z: [N, K], one row per invocation (no barriers).
//
// argmax:       idx[n] = the first k with z[n, k] = max_k z[n, k] (strict > keeps the first on
//               ties; NaN entries never win unless the row starts with one).
// correct_rows: hit[n] = 1.0 if argmax(z_n) == label_n else 0.0; kernels/loss_reduce.wgsl sums
//               the flags (exact in f32 for counts below 2^24).
//
// Binding 2 is declared read_write u32 because argmax writes indices there while correct_rows
// only reads labels from it: one declaration per binding keeps the module valid for every entry
// point (a label buffer bound writable is harmless as it is bound nowhere else in the dispatch).
//
// Bindings (dispatch order): z, idx / labels, hit (correct_rows only). Params: n rows, k columns.

struct Params {
  n: u32,
  k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> hit: array<f32>;

fn row(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 64u + lid;
}

fn row_argmax(base: u32) -> u32 {
  var best = z[base];
  var arg = 0u;
  for (var j = 1u; j < p.k; j++) {
    let v = z[base + j];
    if (v > best) {
      best = v;
      arg = j;
    }
  }
  return arg;
}

@compute @workgroup_size(64)
fn argmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = row(lid, wid, nwg);
  if (r >= p.n) { return; }
  idx[r] = row_argmax(r * p.k);
}

@compute @workgroup_size(64)
fn correct_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = row(lid, wid, nwg);
  if (r >= p.n) { return; }
  hit[r] = select(0.0, 1.0, row_argmax(r * p.k) == idx[r]);
}
