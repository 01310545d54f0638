// Circular shift with optional horizontal flip of NCHW images, as a gather:
//   out[n, c, y, x] = in[n, c, (y + ay) mod H, (f(x) + ax) mod W],  f(x) = W-1-x if flip else x.
// Used to jitter images during synthesis (random translations and flips between iterations, as
// DeepInversion does). The map is a permutation, so its backward pass is the same kernel with the
// inverse map: (−ay, −ax) without flip; (−ay, ax) with flip (x ↦ W−1−x+a is an involution).
// One element per invocation; the workgroup index is wid.x + wid.y * nwg.x (see runtime.ts).
//
// per_image: the same gather with each image's own offsets, read from `offs` (3 u32 per image:
// ay, ax, flip), so every image of a batch is jittered by its own draw. There Params.ay holds
// the elements per image (C·H·W) instead of an offset; Params.ax and Params.flip are unused.

struct Params {
  n: u32,    // elements
  h: u32,
  w: u32,
  ay: u32,   // row offset, already reduced mod H
  ax: u32,   // column offset, already reduced mod W
  flip: u32, // 1 = mirror columns first
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let x = i % p.w;
  let row = i / p.w;
  let y = row % p.h;
  let plane = row / p.h;
  let fx = select(x, p.w - 1u - x, p.flip == 1u);
  let sy = (y + p.ay) % p.h;
  let sx = (fx + p.ax) % p.w;
  dst[i] = src[(plane * p.h + sy) * p.w + sx];
}

@group(0) @binding(3) var<storage, read> offs: array<u32>;

@compute @workgroup_size(256)
fn per_image(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let chw = p.ay;
  let img = i / chw;
  let x = i % p.w;
  let row = i / p.w;
  let y = row % p.h;
  let plane = row / p.h;
  let ay = offs[3u * img];
  let ax = offs[3u * img + 1u];
  let fx = select(x, p.w - 1u - x, offs[3u * img + 2u] == 1u);
  let sy = (y + ay) % p.h;
  let sx = (fx + ax) % p.w;
  dst[i] = src[(plane * p.h + sy) * p.w + sx];
}
