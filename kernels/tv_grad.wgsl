// The gradient of the anisotropic total variation of kernels/loss_tv.wgsl at one pixel, shared by
// the kernels that prepend this file to their source (loss_tv.wgsl, and optim.wgsl's adam_tv).
// The including kernel declares `tv_x`, the images, as a storage buffer. For the pixel at row r,
// column c of the image row that starts at element `base` (H rows, W columns):
//   g = sy (sgn(x[r,c] - x[r-1,c]) - sgn(x[r+1,c] - x[r,c]))
//     + sx (sgn(x[r,c] - x[r,c-1]) - sgn(x[r,c+1] - x[r,c]))   (terms outside the image 0).

fn tv_pixel_grad(base: u32, r: u32, c: u32, h: u32, w: u32, sy: f32, sx: f32) -> f32 {
  let v = tv_x[base + c];
  var g = 0.0;
  if (r > 0u) { g += sy * sign(v - tv_x[base + c - w]); }
  if (r + 1u < h) { g -= sy * sign(tv_x[base + c + w] - v); }
  if (c > 0u) { g += sx * sign(v - tv_x[base + c - 1u]); }
  if (c + 1u < w) { g -= sx * sign(tv_x[base + c + 1u] - v); }
  return g;
}
