// Anisotropic total variation of images x: [N, C, H, W] (the image prior of Mahendran & Vedaldi,
// 2015, and DeepInversion), as the batch mean of each image's mean absolute difference between
// vertical and between horizontal neighbours:
//   TV = sy · sum |x[r+1, c] - x[r, c]| + sx · sum |x[r, c+1] - x[r, c]|,
//   sy = 1 / (N C (H-1) W), sx = 1 / (N C H (W-1))   (0 when H = 1 or W = 1).
// One invocation per image row (plane · H + r): it writes the gradient of TV w.r.t. each pixel of
// its row (tv_pixel_grad of kernels/tv_grad.wgsl, which the op prepends to this source), and, into
// part[row], its share of TV: the differences to the next row and the next column.
// kernels/loss_reduce.wgsl then sums part (scale 1). (In synthesis the prior's gradient joins the
// Adam step instead: optim.wgsl's adam_tv.)
//
// Bindings (dispatch order): x, grad, part. Params: rows (N C H), h, w, sy, sx.

struct Params {
  rows: u32,
  h: u32,
  w: u32,
  sy: f32,
  sx: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tv_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(64)
fn tv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
      @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (row >= p.rows) { return; }
  let r = row % p.h;
  let base = row * p.w;
  var loss = 0.0;
  for (var c = 0u; c < p.w; c++) {
    let v = tv_x[base + c];
    if (r + 1u < p.h) { loss += p.sy * abs(tv_x[base + c + p.w] - v); }
    if (c + 1u < p.w) { loss += p.sx * abs(tv_x[base + c + 1u] - v); }
    grad[base + c] = tv_pixel_grad(base, r, c, p.h, p.w, p.sy, p.sx);
  }
  part[row] = loss;
}
