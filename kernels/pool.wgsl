// 2-D max and average pooling over K x K windows with stride S and no padding (NCHW f32), and
// their backward passes. OH = floor((H - K) / S) + 1, likewise OW. K and S are pipeline
// constants (the window loops unroll, divisions by them are cheap).
//
// Formulation: one invocation per row (of outputs for the forward passes, of windows or of
// inputs for the backward passes) that walks the row. On llvmpipe integer division by a runtime
// value is scalarised per lane and every load/store runs lane by lane, so a row walk (one index
// decode per row, loop counters uniform across lanes) is several times faster than one
// invocation per element.
// The backward passes are race-free without atomics and deterministic:
//  * windows that do not overlap (S >= K): each input element lies in at most one window, so the
//    invocation of a window row writes every element of its windows (gy, or gy / K² for average
//    pooling; for max pooling gy at the recorded argmax and 0 elsewhere); elements outside every
//    window are zeroed by the op beforehand;
//  * overlapping windows (S < K): gather. The invocation of an input row sums, for each element,
//    the gradients of the outputs whose window holds it (for max pooling: whose argmax it is).

override K: u32 = 2u;
override S: u32 = 2u;

struct Params {
  rows: u32, // invocations: planes * OH (forward, window backward) or planes * H (gather)
  H: u32,
  W: u32,
  OH: u32,
  OW: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn row_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 64u + lid;
}

// ---------------------------------------------------------------------------------------------
// Forward passes: invocation = (plane, oy).
// max_forward: y = max over the window, argmax = flat index into x (over all of N*C*H*W) of the
// first maximum in row-major window order.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

@compute @workgroup_size(64)
fn max_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let oy = i % p.OH;
  let plane = i / p.OH;
  let in0 = (plane * p.H + oy * S) * p.W;
  let out0 = i * p.OW;
  for (var ox = 0u; ox < p.OW; ox++) {
    let first = in0 + ox * S;
    var best = x[first];
    var at = first;
    for (var ky = 0u; ky < K; ky++) {
      for (var kx = 0u; kx < K; kx++) {
        let j = first + ky * p.W + kx;
        let v = x[j];
        if (v > best) {
          best = v;
          at = j;
        }
      }
    }
    y[out0 + ox] = best;
    argmax[out0 + ox] = at;
  }
}

// avg_forward: y = mean over the window.
@compute @workgroup_size(64)
fn avg_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let oy = i % p.OH;
  let plane = i / p.OH;
  let in0 = (plane * p.H + oy * S) * p.W;
  let out0 = i * p.OW;
  let scale = 1.0 / f32(K * K);
  for (var ox = 0u; ox < p.OW; ox++) {
    let first = in0 + ox * S;
    var s = 0.0;
    for (var ky = 0u; ky < K; ky++) {
      for (var kx = 0u; kx < K; kx++) { s += x[first + ky * p.W + kx]; }
    }
    y[out0 + ox] = s * scale;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward passes for S >= K: invocation = (plane, oy), writes its windows.

@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx_avg: array<f32>;

@compute @workgroup_size(64)
fn max_backward_windows(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let oy = i % p.OH;
  let plane = i / p.OH;
  let in0 = (plane * p.H + oy * S) * p.W;
  let out0 = i * p.OW;
  for (var ox = 0u; ox < p.OW; ox++) {
    let g = gy[out0 + ox];
    let at = arg_in[out0 + ox];
    let first = in0 + ox * S;
    for (var ky = 0u; ky < K; ky++) {
      for (var kx = 0u; kx < K; kx++) {
        let j = first + ky * p.W + kx;
        gx[j] = select(0.0, g, j == at);
      }
    }
  }
}

@compute @workgroup_size(64)
fn avg_backward_windows(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let oy = i % p.OH;
  let plane = i / p.OH;
  let in0 = (plane * p.H + oy * S) * p.W;
  let out0 = i * p.OW;
  let scale = 1.0 / f32(K * K);
  for (var ox = 0u; ox < p.OW; ox++) {
    let g = gy[out0 + ox] * scale;
    let first = in0 + ox * S;
    for (var ky = 0u; ky < K; ky++) {
      for (var kx = 0u; kx < K; kx++) { gx_avg[first + ky * p.W + kx] = g; }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward passes for S < K (overlapping windows): invocation = (plane, iy), gathers. The outputs
// whose window holds input coordinate i are [ceil((i - K + 1) / S), floor(i / S)] ∩ [0, size).

fn covering(i: u32, size: u32) -> vec2<u32> {
  let lo = select(0u, (i + S - K) / S, i + 1u > K);
  return vec2(lo, min(size, i / S + 1u));
}

@compute @workgroup_size(64)
fn max_backward_gather(@builtin(local_invocation_index) lid: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let iy = i % p.H;
  let plane = i / p.H;
  let ry = covering(iy, p.OH);
  for (var ix = 0u; ix < p.W; ix++) {
    let rx = covering(ix, p.OW);
    let j = i * p.W + ix;
    var s = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
      let row = (plane * p.OH + oy) * p.OW;
      for (var ox = rx.x; ox < rx.y; ox++) {
        if (arg_in[row + ox] == j) { s += gy[row + ox]; }
      }
    }
    gx[j] = s;
  }
}

@compute @workgroup_size(64)
fn avg_backward_gather(@builtin(local_invocation_index) lid: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let iy = i % p.H;
  let plane = i / p.H;
  let ry = covering(iy, p.OH);
  let scale = 1.0 / f32(K * K);
  for (var ix = 0u; ix < p.W; ix++) {
    let rx = covering(ix, p.OW);
    var s = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
      let row = (plane * p.OH + oy) * p.OW;
      for (var ox = rx.x; ox < rx.y; ox++) { s += gy[row + ox]; }
    }
    gx_avg[i * p.W + ix] = s * scale;
  }
}
