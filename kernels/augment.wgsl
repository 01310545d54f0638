// Distillation batches assembled on the adapter: images gathered by index from a stored set, each
// translated (zero fill) and optionally mirrored by its own draw, then mixed inside the batch
// (mixup, Zhang et al., ICLR 2018):
//
//   a_i[c, y, x] = src[k_i, c, y − dy_i, x']   with x' = W−1−(x − dx_i) if flip_i else x − dx_i,
//                  0 where (y − dy_i, x') falls outside the image;
//   out_i        = a_i                          without mixup,
//                  λ_i · a_i + (1 − λ_i) · a_j  with mixup (j = j_i, another image of the batch).
//
// Each image's draw is 6 u32 in `draws`: k (source image), dy and dx (i32 bitcast), flip, j, λ
// (f32 bitcast). One image row per invocation; workgroup index wid.x + wid.y * nwg.x.

struct Params {
  rows: u32, // image rows of the batch: n * C * H
  per: u32, // elements per image: C * H * W
  h: u32,
  w: u32,
  mix: u32, // 1 = mixup
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> draws: array<u32>;

// Where row `r` (plane * H + y) of batch image `i` reads after its translation and flip: the
// source row's first element (or -1 when the row falls outside), the column of output column 0,
// and the column step (+1, or -1 when mirrored): source column = c0 + step * x.
struct RowMap {
  base: i32,
  c0: i32,
  step: i32,
}

fn row_map(i: u32, r: u32) -> RowMap {
  let d = 6u * i;
  let y = i32(r % p.h);
  let plane = r / p.h;
  let sy = y - bitcast<i32>(draws[d + 1u]);
  let dx = bitcast<i32>(draws[d + 2u]);
  var base = -1;
  if (sy >= 0 && sy < i32(p.h)) { base = i32(draws[d] * p.per + (plane * p.h + u32(sy)) * p.w); }
  // x' = x − dx, mirrored: W−1−(x − dx)
  if (draws[d + 3u] == 1u) { return RowMap(base, i32(p.w) - 1 + dx, -1); }
  return RowMap(base, -dx, 1);
}

fn at(m: RowMap, x: u32) -> f32 {
  let sx = m.c0 + m.step * i32(x);
  if (m.base < 0 || sx < 0 || sx >= i32(p.w)) { return 0.0; }
  return src[u32(m.base + sx)];
}

// One image row per invocation: the row's mapping is worked out once, then its W columns.
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (t >= p.rows) { return; }
  let rowsPer = p.per / p.w;
  let i = t / rowsPer;
  let r = t % rowsPer;
  let a = row_map(i, r);
  let o = t * p.w;
  if (p.mix == 0u) {
    for (var x = 0u; x < p.w; x++) { out[o + x] = at(a, x); }
    return;
  }
  let lambda = bitcast<f32>(draws[6u * i + 5u]);
  let b = row_map(draws[6u * i + 4u], r);
  for (var x = 0u; x < p.w; x++) { out[o + x] = lambda * at(a, x) + (1.0 - lambda) * at(b, x); }
}
