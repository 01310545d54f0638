// Bilinear upsampling by an integer factor F, NCHW f32 (half-pixel centres, PyTorch's
// `interpolate(mode="bilinear", align_corners=False)`):
//
//   s(o) = max((o + 0.5) / F − 0.5, 0),  i0 = floor(s),  i1 = min(i0 + 1, h − 1),  l = s − i0
//   y[p, oy, ox] = Σ_{a, b ∈ {0, 1}} wy_a(oy) · wx_b(ox) · x[p, iy_a, ix_b]
//   with wy_0 = 1 − l, wy_1 = l (and the same along x), p = n·C + c.
//
// `forward` writes one output element per invocation; `backward` (the adjoint, gx = Uᵀ gy) one
// input element per invocation, gathering every output whose taps include it: along each axis the
// outputs o in [(i − 1)·F, (i + 2)·F) are the only ones that can. F is a pipeline constant.

override F: u32 = 2u;

struct Params {
  total: u32, // elements written: planes * H * W (forward) or planes * h * w (backward)
  h: u32, // input (low-resolution) height
  w: u32, // input width
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

struct Taps {
  i0: u32,
  i1: u32,
  l: f32, // weight of i1; i0 gets 1 − l
}

fn taps(o: u32, n: u32) -> Taps {
  let s = max((f32(o) + 0.5) / f32(F) - 0.5, 0.0);
  let i0 = min(u32(floor(s)), n - 1u);
  return Taps(i0, min(i0 + 1u, n - 1u), s - f32(i0));
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.total) { return; }
  let W = p.w * F;
  let H = p.h * F;
  let ox = i % W;
  let oy = (i / W) % H;
  let base = (i / (W * H)) * p.h * p.w;
  let ty = taps(oy, p.h);
  let tx = taps(ox, p.w);
  let r0 = base + ty.i0 * p.w;
  let r1 = base + ty.i1 * p.w;
  let top = (1.0 - tx.l) * src[r0 + tx.i0] + tx.l * src[r0 + tx.i1];
  let bottom = (1.0 - tx.l) * src[r1 + tx.i0] + tx.l * src[r1 + tx.i1];
  dst[i] = (1.0 - ty.l) * top + ty.l * bottom;
}

// Weight of input index `i` in output `o`'s interpolation along one axis (0 when not a tap).
fn weight(o: u32, i: u32, n: u32) -> f32 {
  let t = taps(o, n);
  var v = 0.0;
  if (t.i0 == i) { v += 1.0 - t.l; }
  if (t.i1 == i) { v += t.l; }
  return v;
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.total) { return; }
  let W = p.w * F;
  let H = p.h * F;
  let ix = i % p.w;
  let iy = (i / p.w) % p.h;
  let base = (i / (p.w * p.h)) * H * W;
  let y0 = select(0u, (iy - 1u) * F, iy > 0u);
  let y1 = min((iy + 2u) * F, H);
  let x0 = select(0u, (ix - 1u) * F, ix > 0u);
  let x1 = min((ix + 2u) * F, W);
  var acc = 0.0;
  for (var oy = y0; oy < y1; oy++) {
    let wy = weight(oy, iy, p.h);
    if (wy == 0.0) { continue; }
    var row = 0.0;
    for (var ox = x0; ox < x1; ox++) {
      row += weight(ox, ix, p.w) * src[base + oy * W + ox];
    }
    acc += wy * row;
  }
  dst[i] = acc;
}
