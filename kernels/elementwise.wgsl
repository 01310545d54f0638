// Element-wise ops on flat f32 arrays, one element per invocation.
// Entry points share one Params layout: n (element count), then alpha, beta.
// Workgroup index = wid.x + wid.y * nwg.x, so more than 65,535 workgroups work (see runtime.ts).

struct Params {
  n: u32,
  alpha: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

// out = alpha * a + beta * b
@compute @workgroup_size(256)
fn add(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = p.alpha * a[i] + p.beta * b[i]; }
}

// out = a * b
@compute @workgroup_size(256)
fn mul(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = a[i] * b[i]; }
}

// relu backward: out = b where a > 0, else 0 (a = forward input, b = output gradient)
@compute @workgroup_size(256)
fn relu_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i < p.n) { out[i] = select(0.0, b[i], a[i] > 0.0); }
}
