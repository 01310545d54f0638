// Unary element-wise ops on flat f32 arrays, one element per invocation.
// Params: n (element count), alpha, beta. Workgroup index = wid.x + wid.y * nwg.x.

struct Params {
  n: u32,
  alpha: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

// out = alpha * a + beta
@compute @workgroup_size(256)
fn affine(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = p.alpha * a[i] + p.beta; }
}

// out = max(a, 0)
@compute @workgroup_size(256)
fn relu(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = max(a[i], 0.0); }
}

// out = clamp(a, alpha, beta)
@compute @workgroup_size(256)
fn clamp_range(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = clamp(a[i], p.alpha, p.beta); }
}
