// 2-D max and average pooling over k x k windows with stride s and no padding (NCHW f32), and
// their backward passes. OH = floor((H - k) / s) + 1, likewise OW.
//
// Formulation: one invocation per output element (forward) or per input element (backward).
// The backward passes gather rather than scatter: an input element sums the gradients of the
// outputs whose window holds it (for max pooling: whose recorded argmax is this element), so
// overlapping windows (k > s) need no atomics and the result is deterministic. Windows are small
// (k*k loads), so no register blocking is needed here.

struct Params {
  total: u32, // elements of the output (forward) or of the input (backward)
  H: u32,
  W: u32,
  OH: u32,
  OW: u32,
  K: u32,
  S: u32,
}

fn index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@group(0) @binding(0) var<uniform> p: Params;

// ---------------------------------------------------------------------------------------------
// max_forward: y = max over the window, argmax = flat index into x of the first maximum
// (row-major order within the window).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

@compute @workgroup_size(256)
fn max_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.total) { return; }
  let ox = i % p.OW;
  let oy = (i / p.OW) % p.OH;
  let plane = i / (p.OW * p.OH);
  let first = (plane * p.H + oy * p.S) * p.W + ox * p.S;
  var best = x[first];
  var at = first;
  for (var ky = 0u; ky < p.K; ky++) {
    let row = first + ky * p.W;
    for (var kx = 0u; kx < p.K; kx++) {
      let v = x[row + kx];
      if (v > best) {
        best = v;
        at = row + kx;
      }
    }
  }
  y[i] = best;
  argmax[i] = at;
}

// ---------------------------------------------------------------------------------------------
// avg_forward: y = mean over the window.

@compute @workgroup_size(256)
fn avg_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.total) { return; }
  let ox = i % p.OW;
  let oy = (i / p.OW) % p.OH;
  let plane = i / (p.OW * p.OH);
  let first = (plane * p.H + oy * p.S) * p.W + ox * p.S;
  var s = 0.0;
  for (var ky = 0u; ky < p.K; ky++) {
    for (var kx = 0u; kx < p.K; kx++) { s += x[first + ky * p.W + kx]; }
  }
  y[i] = s / f32(p.K * p.K);
}

// ---------------------------------------------------------------------------------------------
// Backward passes, one invocation per input element (n, c, iy, ix): the outputs whose window
// holds it are oy in [ceil((iy - K + 1) / S), floor(iy / S)] ∩ [0, OH), likewise ox.

@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx_avg: array<f32>;

// First and one-past-last output coordinate whose window covers input coordinate `i`.
fn covering(i: u32, outSize: u32) -> vec2<u32> {
  let lo = select(0u, (i + p.S - p.K) / p.S, i + 1u > p.K); // ceil((i - K + 1) / S)
  let hi = min(outSize, i / p.S + 1u);
  return vec2(lo, hi);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.total) { return; }
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let plane = i / (p.W * p.H);
  let ry = covering(iy, p.OH);
  let rx = covering(ix, p.OW);
  var s = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    let row = (plane * p.OH + oy) * p.OW;
    for (var ox = rx.x; ox < rx.y; ox++) {
      if (arg_in[row + ox] == i) { s += gy[row + ox]; }
    }
  }
  gx[i] = s;
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.total) { return; }
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let plane = i / (p.W * p.H);
  let ry = covering(iy, p.OH);
  let rx = covering(ix, p.OW);
  var s = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    let row = (plane * p.OH + oy) * p.OW;
    for (var ox = rx.x; ox < rx.y; ox++) { s += gy[row + ox]; }
  }
  gx_avg[i] = s / f32(p.K * p.K);
}
