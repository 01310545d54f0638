// Reductions shared by the losses and metrics.
//
// sum: dst[0] = scale * sum_{i < n} src[i], in ONE workgroup of 256 invocations: each invocation
//   adds a strided slice (i = lid, lid + 256, ...; a few hundred values for a 1M-element loss
//   after the per-chunk stage), then a tree reduction in workgroup memory (8 barriers). One
//   workgroup keeps the result deterministic and needs no atomics or float CAS loops; the
//   per-row/per-chunk stages before it carry the parallel work.
// accumulate: dst[i] += src[i] for i < n (running totals over batches without a readback).
//
// Bindings (dispatch order): src, dst. Params: n, scale.

struct Params {
  n: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> sh: array<f32, 256>;

@compute @workgroup_size(256)
fn sum(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.n; i += 256u) { acc += src[i]; }
  sh[lid] = acc;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { sh[lid] += sh[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) { dst[0] = sh[0] * p.scale; }
}

@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i < p.n) { dst[i] += src[i]; }
}
