// Shared-memory tiled matmul: C[M,N] = op(A)·op(B) (+ bias[N] broadcast over rows), f32.
//
// Layouts (override constants, one specialised pipeline per layout):
//   TRANS_A = false: A stored [M, K];  TRANS_A = true: A stored [K, M]
//   TRANS_B = false: B stored [K, N];  TRANS_B = true: B stored [N, K]
// Any shapes: global loads are scalar and bounds-checked (zero outside), so nothing is padded.
//
// Why this shape: on real GPUs global memory is the bottleneck, so an 8x8 workgroup stages a
// 64 x 8 slice of op(A) and an 8 x 64 slice of op(B) in workgroup memory per step and computes
// a 64x64 output tile from it; each invocation owns an 8x8 block (rows 4y..4y+3 and 32+4y..,
// columns 4x..4x+3 and 32+4x..), so every staged value is reused 8 times from registers and the
// inner loop does 64 multiply-adds per four vec4 reads of workgroup memory. Workgroup memory
// holds vec4 of 4 rows (A) or 4 columns (B) at one k. The staging maps consecutive invocations
// to consecutive addresses of the stored layout, so global reads coalesce for every layout.
// Workgroup memory is kept small (2 x 8 x 64 floats) because WGSL zero-initialises it and
// llvmpipe compiles that initialisation slowly; 64 invocations per workgroup also keep
// llvmpipe's per-invocation cost of barriers down. On llvmpipe itself use matmul.wgsl.
//
// Grid: workgroups are numbered linearly (wid.x + wid.y * nwg.x, so the host may split a long
// 1-D grid over y); workgroup `lin` covers tile row lin / p.gx and tile column lin % p.gx.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const TS = 64u; // output tile is TS x TS
const TK = 8u; // K step
const G = 16u; // TS / 4: 4-row (4-column) groups per tile
const WG = 8u; // the workgroup is WG x WG

struct Params {
  M: u32,
  N: u32,
  K: u32,
  gx: u32, // workgroups along N
  total: u32, // workgroups in the grid
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> As: array<vec4<f32>, 128>; // As[kk * G + g] = op(A)[rows 4g..4g+3, k0 + kk]
var<workgroup> Bs: array<vec4<f32>, 128>; // Bs[kk * G + g] = op(B)[k0 + kk, columns 4g..4g+3]

// op(A)[row, k], 0 outside.
fn get_a(row: u32, k: u32) -> f32 {
  var v = 0.0;
  if (row < p.M && k < p.K) {
    if (TRANS_A) {
      v = a[k * p.M + row];
    } else {
      v = a[row * p.K + k];
    }
  }
  return v;
}

// op(B)[k, col], 0 outside.
fn get_b(k: u32, col: u32) -> f32 {
  var v = 0.0;
  if (k < p.K && col < p.N) {
    if (TRANS_B) {
      v = b[col * p.K + k];
    } else {
      v = b[k * p.N + col];
    }
  }
  return v;
}

// Stages op(A) (which = 0) or op(B) (which = 1) vec4 number t (0..127) of the current step.
fn stage(which: u32, t: u32, row0: u32, col0: u32, k0: u32) {
  var g: u32; // 4-row (4-column) group
  var kk: u32;
  if ((which == 0u && TRANS_A) || (which == 1u && !TRANS_B)) {
    // stored with rows (columns) contiguous: neighbours take neighbouring groups
    g = t % G;
    kk = t / G;
  } else {
    // stored with k contiguous: neighbours take neighbouring k
    g = t / TK;
    kk = t % TK;
  }
  let k = k0 + kk;
  if (which == 0u) {
    let r = row0 + 4u * g;
    As[kk * G + g] = vec4<f32>(get_a(r, k), get_a(r + 1u, k), get_a(r + 2u, k), get_a(r + 3u, k));
  } else {
    let cc = col0 + 4u * g;
    Bs[kk * G + g] = vec4<f32>(get_b(k, cc), get_b(k, cc + 1u), get_b(k, cc + 2u), get_b(k, cc + 3u));
  }
}

@compute @workgroup_size(WG, WG)
fn main(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lin = wid.x + wid.y * nwg.x;
  if (lin >= p.total) {
    return; // uniform over the workgroup
  }
  let row0 = (lin / p.gx) * TS;
  let col0 = (lin % p.gx) * TS;
  // acc_XY_i: row i of the 4x4 block X (0: rows 4y.., 1: rows 32+4y..) x Y (columns likewise)
  var acc00_0 = vec4<f32>(0.0);
  var acc00_1 = vec4<f32>(0.0);
  var acc00_2 = vec4<f32>(0.0);
  var acc00_3 = vec4<f32>(0.0);
  var acc01_0 = vec4<f32>(0.0);
  var acc01_1 = vec4<f32>(0.0);
  var acc01_2 = vec4<f32>(0.0);
  var acc01_3 = vec4<f32>(0.0);
  var acc10_0 = vec4<f32>(0.0);
  var acc10_1 = vec4<f32>(0.0);
  var acc10_2 = vec4<f32>(0.0);
  var acc10_3 = vec4<f32>(0.0);
  var acc11_0 = vec4<f32>(0.0);
  var acc11_1 = vec4<f32>(0.0);
  var acc11_2 = vec4<f32>(0.0);
  var acc11_3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    stage(0u, li, row0, col0, k0);
    stage(0u, li + 64u, row0, col0, k0);
    stage(1u, li, row0, col0, k0);
    stage(1u, li + 64u, row0, col0, k0);
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a0 = As[kk * G + lid.y];
      let a1 = As[kk * G + WG + lid.y];
      let b0 = Bs[kk * G + lid.x];
      let b1 = Bs[kk * G + WG + lid.x];
      acc00_0 = fma(vec4<f32>(a0.x), b0, acc00_0);
      acc00_1 = fma(vec4<f32>(a0.y), b0, acc00_1);
      acc00_2 = fma(vec4<f32>(a0.z), b0, acc00_2);
      acc00_3 = fma(vec4<f32>(a0.w), b0, acc00_3);
      acc01_0 = fma(vec4<f32>(a0.x), b1, acc01_0);
      acc01_1 = fma(vec4<f32>(a0.y), b1, acc01_1);
      acc01_2 = fma(vec4<f32>(a0.z), b1, acc01_2);
      acc01_3 = fma(vec4<f32>(a0.w), b1, acc01_3);
      acc10_0 = fma(vec4<f32>(a1.x), b0, acc10_0);
      acc10_1 = fma(vec4<f32>(a1.y), b0, acc10_1);
      acc10_2 = fma(vec4<f32>(a1.z), b0, acc10_2);
      acc10_3 = fma(vec4<f32>(a1.w), b0, acc10_3);
      acc11_0 = fma(vec4<f32>(a1.x), b1, acc11_0);
      acc11_1 = fma(vec4<f32>(a1.y), b1, acc11_1);
      acc11_2 = fma(vec4<f32>(a1.z), b1, acc11_2);
      acc11_3 = fma(vec4<f32>(a1.w), b1, acc11_3);
    }
    workgroupBarrier();
  }
  let r0 = row0 + 4u * lid.y;
  let r1 = r0 + 32u;
  let c0 = col0 + 4u * lid.x;
  let c1 = c0 + 32u;
  let bv0 = bias4(c0);
  let bv1 = bias4(c1);
  store_row(r0, c0, acc00_0 + bv0);
  store_row(r0 + 1u, c0, acc00_1 + bv0);
  store_row(r0 + 2u, c0, acc00_2 + bv0);
  store_row(r0 + 3u, c0, acc00_3 + bv0);
  store_row(r0, c1, acc01_0 + bv1);
  store_row(r0 + 1u, c1, acc01_1 + bv1);
  store_row(r0 + 2u, c1, acc01_2 + bv1);
  store_row(r0 + 3u, c1, acc01_3 + bv1);
  store_row(r1, c0, acc10_0 + bv0);
  store_row(r1 + 1u, c0, acc10_1 + bv0);
  store_row(r1 + 2u, c0, acc10_2 + bv0);
  store_row(r1 + 3u, c0, acc10_3 + bv0);
  store_row(r1, c1, acc11_0 + bv1);
  store_row(r1 + 1u, c1, acc11_1 + bv1);
  store_row(r1 + 2u, c1, acc11_2 + bv1);
  store_row(r1 + 3u, c1, acc11_3 + bv1);
}

// bias[col..col+3] (zero without bias; clamped reads past N are never stored).
fn bias4(col: u32) -> vec4<f32> {
  var bv = vec4<f32>(0.0);
  if (p.has_bias != 0u) {
    let cc = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.N - 1u));
    bv = vec4<f32>(bias[cc.x], bias[cc.y], bias[cc.z], bias[cc.w]);
  }
  return bv;
}

// Writes C[r, col..col+3], skipping entries outside [M, N]. (A run-time loop rather than four
// guarded stores: llvmpipe compiles every store as a loop over its SIMD lanes, and 64 guarded
// stores tripled the compile time.)
fn store_row(r: u32, col: u32, v: vec4<f32>) {
  let N = p.N;
  if (r < p.M && col < N) {
    let o = r * N + col;
    let n = min(N - col, 4u);
    for (var j = 0u; j < n; j++) {
      c[o + j] = v[j];
    }
  }
}
