// Chunked sums along one axis: x viewed as row-major [A, L, B] -> out [A, G, B] with
//   out[a, g, b] = sum of x[a, l, b] for l in [g·R, min((g+1)·R, L)),  G = ceil(L / R).
// sumCols ([M,N] -> [N]) is A = 1, L = M, B = N.
// The host repeats the pass on the partial sums until G = 1.
//
// Why this shape: one invocation per output and a plain loop, no workgroup memory or barriers
// (slow on llvmpipe, the software adapter); chunking keeps enough invocations busy when the
// summed axis is long and the other one short (e.g. bias gradients of a huge batch), and summing
// in chunks of R keeps the f32 rounding error near log_R(L)·R·eps instead of L·eps.
// For sumCols neighbouring invocations read neighbouring addresses (b is fastest).
// Workgroup index = wid.x + wid.y * nwg.x, so more than 65,535 workgroups work (see runtime.ts).

struct Params {
  A: u32,
  L: u32,
  B: u32,
  R: u32, // chunk length along L
  G: u32, // chunks, ceil(L / R)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn sum_chunks(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = (wid.x + wid.y * nwg.x) * 256u + li;
  if (i >= p.A * p.G * p.B) {
    return;
  }
  let b = i % p.B;
  let ag = i / p.B;
  let g = ag % p.G;
  let a = ag / p.G;
  let l0 = g * p.R;
  let l1 = min(l0 + p.R, p.L);
  var o = (a * p.L + l0) * p.B + b;
  var s = 0.0;
  for (var l = l0; l < l1; l++) {
    s += x[o];
    o += p.B;
  }
  out[i] = s;
}
