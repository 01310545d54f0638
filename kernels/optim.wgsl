// In-place optimizer updates (one element per invocation) and a GPU-scalar scale.
//
// adam (Kingma & Ba 2015, bias-corrected as in their Algorithm 1, epsilon outside the root):
//   g' = g + wd·w;  m = b1·m + (1-b1)·g';  v = b2·v + (1-b2)·g'²;
//   w  = w - step · m / (sqrt(v)·inv_sqrt_bc2 + eps),  step = lr / (1 - b1^t),
//   inv_sqrt_bc2 = 1 / sqrt(1 - b2^t); both corrections, and 1 - b1 and 1 - b2, are computed in
//   float64 on the CPU: 1 - b2 formed in f32 from b2 = 0.999 would be off by 1.3e-5 relative.
//   Then, if flag = 1, w = clamp(w, lo, hi).
// sgd (heavy-ball momentum without dampening; velocity starts at zero):
//   g' = g + wd·w;  u = mom·u + g';  w = w - lr·(g' + mom·u if nesterov (flag = 1) else u).
// sign_step (one FGSM / projected-sign ascent step, Goodfellow et al. 2015):
//   w = w + lr·sign(g), sign(0) = 0; then, if flag = 1, w = clamp(w, lo, hi).
// scale_by_scalar: w = g · m[0] · c  (w is a new output tensor, g the input, m the [1] scalar;
//   chains an upstream loss gradient held on the GPU without a readback).
//
// Each buffer the update writes is a single read_write binding: WebGPU forbids binding the same
// buffer twice in one dispatch when one binding is writable, so "in place" must mean one binding.
//
// Bindings (dispatch order): w (param / output), g (grad / input), m (Adam m, SGD velocity,
// or the scalar), v (Adam v). Params: n, flag, then lr (= step for adam, = c for
// scale_by_scalar), beta1 (= momentum for sgd), beta2, eps, wd, inv_sqrt_bc2, lo, hi,
// one_m_beta1, one_m_beta2.

struct Params {
  n: u32,
  flag: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  wd: f32,
  inv_sqrt_bc2: f32,
  lo: f32,
  hi: f32,
  one_m_beta1: f32,
  one_m_beta2: f32,
  h: u32, // adam_tv only: image height
  w: u32, // adam_tv only: image width
  sx: f32, // adam_tv only: the TV's column scale
  rpi: u32, // adam_tv_jitter only: image rows per image (C·H)
  scatter: u32, // adam_tv_jitter only: 1 = write the next jittered copy
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

fn index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn adam(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.n) { return; }
  let wi = w[i];
  w[i] = adam_update(i, wi, g[i] + p.wd * wi);
}

// The Adam update of element i from its value wi and gradient gi (weight decay included):
// updates m[i] and v[i] and returns the new value, clamped when flag = 1.
fn adam_update(i: u32, wi: f32, gi: f32) -> f32 {
  let mi = p.beta1 * m[i] + p.one_m_beta1 * gi;
  let vi = p.beta2 * v[i] + p.one_m_beta2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  var wn = wi - p.lr * mi / (sqrt(vi) * p.inv_sqrt_bc2 + p.eps);
  if (p.flag == 1u) { wn = clamp(wn, p.lo, p.hi); }
  return wn;
}

@compute @workgroup_size(256)
fn sgd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.n) { return; }
  let wi = w[i];
  let gi = g[i] + p.wd * wi;
  let ui = p.beta1 * m[i] + gi;
  m[i] = ui;
  let step = select(ui, gi + p.beta1 * ui, p.flag == 1u);
  w[i] = wi - p.lr * step;
}

@compute @workgroup_size(256)
fn sign_step(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.n) { return; }
  var wn = w[i] + p.lr * sign(g[i]);
  if (p.flag == 1u) { wn = clamp(wn, p.lo, p.hi); }
  w[i] = wn;
}

@compute @workgroup_size(256)
fn scale_by_scalar(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.n) { return; }
  w[i] = g[i] * m[0] * p.lr;
}

// adam4: adam on four elements per invocation (n a multiple of 4, p.n = n / 4): vec4 loads and
// stores, a quarter of the invocations (element-wise passes on llvmpipe pay per invocation).
@group(0) @binding(1) var<storage, read_write> w4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn adam4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(lid, wid, nwg);
  if (i >= p.n) { return; }
  let wi = w4[i];
  let gi = g4[i] + p.wd * wi;
  let mi = p.beta1 * m4[i] + p.one_m_beta1 * gi;
  let vi = p.beta2 * v4[i] + p.one_m_beta2 * gi * gi;
  m4[i] = mi;
  v4[i] = vi;
  var wn = wi - p.lr * mi / (sqrt(vi) * p.inv_sqrt_bc2 + p.eps);
  if (p.flag == 1u) { wn = clamp(wn, vec4<f32>(p.lo), vec4<f32>(p.hi)); }
  w4[i] = wn;
}

// adam_tv: adam (with the clamp, no weight decay) on images x: [N, C, H, W] whose gradient also
// takes lambda · dTV/dx (tv_pixel_grad of kernels/tv_grad.wgsl, prepended by the op; p.wd holds
// the TV's row scale sy, p.sx its column scale, p.n the number of image rows). TV reads the
// neighbours of each pixel, so the update cannot be in place: it reads the images from `tv_x`
// and writes the updated ones to `w`. One image row per invocation.
@group(0) @binding(5) var<storage, read> tv_x: array<f32>;

@compute @workgroup_size(64)
fn adam_tv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (row >= p.n) { return; }
  let r = row % p.h;
  let base = row * p.w;
  for (var c = 0u; c < p.w; c++) {
    let i = base + c;
    w[i] = adam_update(i, tv_x[i], g[i] + tv_pixel_grad(base, r, c, p.h, p.w, p.wd, p.sx));
  }
}

// adam_tv_jitter: adam_tv on images x whose jittered copy (each image circularly shifted and
// perhaps mirrored, kernels/shift.wgsl) the loss was taken at; `g` is the gradient of that copy.
// Pixel (r, c) of an image takes its gradient from (r + gy, f(c) + gx) (mod H, W; f(c) = W-1-c
// when gflip = 1, else c): the inverse of the jitter, as shift2d's backward pass. With
// p.scatter = 1 the updated pixel is also written to `jit` at (r + ny, f'(c) + nx): the next
// iteration's jittered copy, written by the inverse of its gather. Image k's offsets are
// offs[6k .. 6k+5] = gy, gx, gflip, ny, nx, nflip, reduced mod H and W. Both maps are
// permutations of whole rows, so no two invocations write one element. One image row per
// invocation; p.rpi image rows per image.
@group(0) @binding(6) var<storage, read> offs: array<u32>;
@group(0) @binding(7) var<storage, read_write> jit: array<f32>;

@compute @workgroup_size(64)
fn adam_tv_jitter(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (row >= p.n) { return; }
  let r = row % p.h;
  let base = row * p.w;
  let plane = base - r * p.w;
  let o = 6u * (row / p.rpi);
  let gbase = plane + ((r + offs[o]) % p.h) * p.w;
  let nbase = plane + ((r + offs[o + 3u]) % p.h) * p.w;
  let gflip = offs[o + 2u] == 1u;
  let nflip = offs[o + 5u] == 1u;
  for (var c = 0u; c < p.w; c++) {
    let i = base + c;
    let gc = (select(c, p.w - 1u - c, gflip) + offs[o + 1u]) % p.w;
    let xn = adam_update(i, tv_x[i], g[gbase + gc] + tv_pixel_grad(base, r, c, p.h, p.w, p.wd, p.sx));
    w[i] = xn;
    if (p.scatter == 1u) {
      jit[nbase + (select(c, p.w - 1u - c, nflip) + offs[o + 4u]) % p.w] = xn;
    }
  }
}
