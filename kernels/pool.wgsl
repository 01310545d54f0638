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
// max_forward: a ReLU fused before the pool, y = max(0, window max) = window max of relu(x)
// (the argmax stays the window's first maximum; its gradient is masked by y > 0 backward).
override RELU: bool = false;

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
    y[out0 + ox] = select(best, max(best, 0.0), RELU);
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

// The same after a fused ReLU: the gradient passes only where the pooled output y > 0.
@group(0) @binding(4) var<storage, read> y_fwd: array<f32>;

@compute @workgroup_size(64)
fn max_backward_windows_relu(@builtin(local_invocation_index) lid: u32,
                             @builtin(workgroup_id) wid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= p.rows) { return; }
  let oy = i % p.OH;
  let plane = i / p.OH;
  let in0 = (plane * p.H + oy * S) * p.W;
  let out0 = i * p.OW;
  for (var ox = 0u; ox < p.OW; ox++) {
    let g = select(0.0, gy[out0 + ox], y_fwd[out0 + ox] > 0.0);
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

// ---------------------------------------------------------------------------------------------
// max_backward_prepared (S >= K, S <= 4, after a fused ReLU): the gradient of the pool's input
// written straight into the prepared layout that the convolution kernel reads
// (kernels/conv2d.wgsl, `prepare_input` with one column phase), so the backward-to-input
// convolution of the layer before the pool needs no separate preparation pass:
//   xq[pl, padT + iy*D, jq*4 + k] = gx[pl, iy, ix] when jq*4 + k - padL = ix*D, else 0,
//   gx[pl, iy, ix] = gy[o] if (iy, ix) is the argmax of output o's window and y[o] > 0, else 0.
// One invocation per (plane, band of S source rows iy = t*S .. t*S + S - 1, those of window row
// t): each window's gradient and argmax are loaded once for the band. Rows of xq holding no
// source row are not written (the convolution kernel skips them). D (the dilation, = the
// convolution's stride) is a constant.

override D: u32 = 1u;
const MAX_S: u32 = 4u;

struct PrepParams {
  rows: u32, // planes * bands
  H: u32, // pool input (= convolution output) height
  W: u32, // ... width
  OH: u32, // pool output height
  OW: u32, // ... width
  Hq: u32, // rows of xq per plane
  Wq4: u32, // vec4s per xq row
  padT: u32, // bitcast i32
  padL: u32, // bitcast i32
  iy0: u32, // first source row that lands in xq
  nRows: u32, // source rows that land in xq
  bands: u32, // bands of S source rows per plane: ceil(H / S)
}

@group(0) @binding(0) var<uniform> pq: PrepParams;
@group(0) @binding(3) var<storage, read_write> xq_out: array<vec4<f32>>;

// Whether source row iy lands in xq, and the index of its first vec4 there.
fn xq_row(plane: u32, iy: u32) -> vec2<u32> {
  let ok = iy >= pq.iy0 && iy < pq.iy0 + pq.nRows;
  let r = u32(bitcast<i32>(pq.padT) + i32(iy * D));
  return vec2<u32>(select(0u, 1u, ok), (plane * pq.Hq + r) * pq.Wq4);
}

@compute @workgroup_size(64)
fn max_backward_prepared(@builtin(local_invocation_index) lid: u32,
                         @builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = row_index(lid, wid, nwg);
  if (i >= pq.rows) { return; }
  let band = i % pq.bands;
  let plane = i / pq.bands;
  let windows = band < pq.OH; // the band's rows t*S .. t*S + K - 1 lie in window row t
  let o0 = (plane * pq.OH + band) * pq.OW;
  let col0 = -bitcast<i32>(pq.padL);
  // The window of the last column seen: its gradient (0 unless y > 0) and argmax. Columns walk
  // in the same order in every lane, so the reload condition is uniform.
  var lastOx = 0xffffffffu;
  var g = 0.0;
  var at = 0u;
  for (var jq = 0u; jq < pq.Wq4; jq++) {
    // Row s, column k at 4s + k. Zeroed explicitly: a `var` declared in a loop without an
    // initializer was found to keep its previous iteration's values on this adapter.
    var v = array<f32, 4u * MAX_S>();
    for (var k = 0u; k < 4u; k++) {
      let pos = col0 + i32(jq * 4u + k);
      let ix = u32(pos) / D;
      if (pos >= 0 && u32(pos) % D == 0u && ix < pq.W && ix % S < K) {
        let ox = ix / S;
        if (ox != lastOx) {
          lastOx = ox;
          g = 0.0;
          if (windows && ox < pq.OW) {
            at = arg_in[o0 + ox];
            g = select(0.0, gy[o0 + ox], y_fwd[o0 + ox] > 0.0);
          }
        }
        // (iy, ix) with iy = band*S + s is the argmax only for s < K
        let here = (plane * pq.H + band * S) * pq.W + ix;
        for (var s = 0u; s < K; s++) { v[4u * s + k] = select(0.0, g, at == here + s * pq.W); }
      }
    }
    for (var s = 0u; s < S; s++) {
      let row = xq_row(plane, band * S + s);
      if (row.x == 1u) {
        xq_out[row.y + jq] = vec4<f32>(v[4u * s], v[4u * s + 1u], v[4u * s + 2u], v[4u * s + 3u]);
      }
    }
  }
}
