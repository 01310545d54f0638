// Register-blocked matmul: C[M,N] = op(A)·op(B) (+ bias[N] broadcast over rows), f32.
//
// Layouts (override constants, so each layout is its own specialised pipeline):
//   TRANS_A = false: A stored [M, K];  TRANS_A = true: A stored [K, M]
//   TRANS_B = false: B stored [K, N];  TRANS_B = true: B stored [N, K]
// A and B are read as vec4 and K is walked in steps of 4, so the host guarantees that every
// stored row length is a multiple of 4 and that K is too (p.K4 = K / 4): an operand that does
// not fit is first copied into a zero-padded buffer with `pad` (below). Padding along K adds
// zero terms only.
//
// Why this shape: on llvmpipe (the software adapter) workgroup memory and barriers are slow and
// invocations run as SIMD lanes, so speed comes from loading as few vectors per multiply-add as
// possible. Each invocation computes a block of (4·NI) x (4·NJ) outputs, up to 16 x 16, held in
// NI·NJ 4x4 matrices (acc_IJ); per step of 4 along K it loads 4·NI vec4 of A and 4·NJ vec4 of B
// and does 64·NI·NJ multiply-adds (1,024 for 16 x 16). No workgroup memory, no barriers. NI and
// NJ are override constants so that thin results get thin blocks; the 64 invocations of a
// workgroup are arranged as p.wgx x p.wgy at run time (a uniform, not a constant, so that shapes
// share pipelines), and surplus invocations return at once. The code is straight-line (no
// arrays, no loops besides K) because llvmpipe compiles such code in about a second while array-
// and loop-heavy forms of the same kernel took minutes.
//
// Grid: workgroups are numbered linearly (wid.x + wid.y * nwg.x, so the host may split a long 1-D
// grid over y); workgroup `lin` covers block row lin / p.gx and block column lin % p.gx.
// Rows and columns past M and N are clamped on load and skipped on store.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override NI: u32 = 4u; // 4-row groups per invocation (1..4)
override NJ: u32 = 4u; // 4-column groups per invocation (1..4)
// Fused element-wise work: RELU applies max(., 0) to the result after the bias (a linear layer
// followed by a ReLU); MASK_A reads A as A ⊙ [mask > 0] (the backward of a ReLU whose output is
// `mask`, stored like A, fused into the load: dx = (gy ⊙ [y > 0])·W in one pass).
override RELU: bool = false;
override MASK_A: bool = false;

struct Params {
  M: u32,
  N: u32,
  K4: u32, // K / 4 (K padded to a multiple of 4)
  sa: u32, // row stride of stored A, in vec4
  sb: u32, // row stride of stored B, in vec4
  sc: u32, // row stride of C, in vec4 (N / 4 rounded up)
  gx: u32, // workgroups along N
  total: u32, // workgroups in the grid
  wgx: u32, // active invocations of a workgroup along N (a power of 2)
  wgy: u32, // ... along M; wgx * wgy <= 64
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> mask: array<vec4<f32>>;

// Element i of stored A, masked when MASK_A.
fn ld_a(i: u32) -> vec4<f32> {
  if (MASK_A) {
    return select(vec4<f32>(0.0), a[i], mask[i] > vec4<f32>(0.0));
  }
  return a[i];
}

// Four rows of op(A) at k..k+3 (k = 4q) as a matrix whose column i is row i's 4 values.
// `o`: vec4 offsets of the four rows (A stored [M, K]), or in o.x the offset of the 4-row group
// (A stored [K, M]).
fn load_a(q: u32, o: vec4<u32>) -> mat4x4<f32> {
  if (TRANS_A) {
    let s = p.sa;
    let base = 4u * q * s + o.x;
    return transpose(
      mat4x4<f32>(ld_a(base), ld_a(base + s), ld_a(base + 2u * s), ld_a(base + 3u * s)),
    );
  }
  return mat4x4<f32>(ld_a(o.x + q), ld_a(o.y + q), ld_a(o.z + q), ld_a(o.w + q));
}

// Four columns of op(B) at k..k+3 (k = 4q) as a matrix whose column j is B[k + j, 4 columns].
// `o`: vec4 offsets of the four columns (B stored [N, K]), or in o.x the offset of the 4-column
// group (B stored [K, N]).
fn load_b(q: u32, o: vec4<u32>) -> mat4x4<f32> {
  if (TRANS_B) {
    return transpose(mat4x4<f32>(b[o.x + q], b[o.y + q], b[o.z + q], b[o.w + q]));
  }
  let s = p.sb;
  let base = 4u * q * s + o.x;
  return mat4x4<f32>(b[base], b[base + s], b[base + 2u * s], b[base + 3u * s]);
}

// acc + B·A as 16 fused multiply-adds of vec4: column i gains sum_j a[i][j] * b[j].
fn mac(acc: mat4x4<f32>, b: mat4x4<f32>, a: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    mac_col(acc[0], b, a[0]),
    mac_col(acc[1], b, a[1]),
    mac_col(acc[2], b, a[2]),
    mac_col(acc[3], b, a[3]),
  );
}

fn mac_col(acc: vec4<f32>, b: mat4x4<f32>, a: vec4<f32>) -> vec4<f32> {
  let s = fma(b[1], vec4<f32>(a.y), fma(b[0], vec4<f32>(a.x), acc));
  return fma(b[3], vec4<f32>(a.w), fma(b[2], vec4<f32>(a.z), s));
}

// vec4 offsets of the rows (A stored [M, K]) or of the row group (stored [K, M]) 4g..4g+3.
fn offsets_a(row0: u32, g: u32) -> vec4<u32> {
  if (TRANS_A) {
    return vec4<u32>(min(row0 / 4u + g, p.sa - 1u));
  }
  let r = vec4<u32>(row0 + 4u * g) + vec4<u32>(0u, 1u, 2u, 3u);
  return min(r, vec4<u32>(p.M - 1u)) * p.sa;
}

// vec4 offsets of the columns (B stored [N, K]) or of the column group (stored [K, N]) 4g..4g+3.
fn offsets_b(col0: u32, g: u32) -> vec4<u32> {
  if (TRANS_B) {
    let cc = vec4<u32>(col0 + 4u * g) + vec4<u32>(0u, 1u, 2u, 3u);
    return min(cc, vec4<u32>(p.N - 1u)) * p.sb;
  }
  return vec4<u32>(min(col0 / 4u + g, p.sb - 1u));
}

// Writes the 4x4 block `m` + bias (column i = row r + i, lanes = column group g), skipping
// rows past M and column groups past the output row. One vec4 store per row: on llvmpipe every
// store is a loop over the SIMD lanes, so 4-wide stores also keep compile time down.
fn store(r: u32, g: u32, m: mat4x4<f32>, bv: vec4<f32>) {
  let sc = p.sc;
  if (g < sc) {
    let M = p.M;
    if (r < M) {
      c[r * sc + g] = epilogue(m[0] + bv);
    }
    if (r + 1u < M) {
      c[(r + 1u) * sc + g] = epilogue(m[1] + bv);
    }
    if (r + 2u < M) {
      c[(r + 2u) * sc + g] = epilogue(m[2] + bv);
    }
    if (r + 3u < M) {
      c[(r + 3u) * sc + g] = epilogue(m[3] + bv);
    }
  }
}

fn epilogue(v: vec4<f32>) -> vec4<f32> {
  if (RELU) {
    return max(v, vec4<f32>(0.0));
  }
  return v;
}

// Bias of column group g (zero without bias); groups past the end read in-buffer padding.
fn bias_of(g: u32) -> vec4<f32> {
  if (p.has_bias != 0u) {
    return bias[min(g, p.sc - 1u)];
  }
  return vec4<f32>(0.0);
}

@compute @workgroup_size(64)
fn main(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lin = wid.x + wid.y * nwg.x;
  let lx = li % p.wgx;
  let ly = li / p.wgx;
  if (lin >= p.total || ly >= p.wgy) {
    return;
  }
  let row0 = ((lin / p.gx) * p.wgy + ly) * (4u * NI);
  let col0 = ((lin % p.gx) * p.wgx + lx) * (4u * NJ);
  if (row0 >= p.M || col0 >= p.N) {
    return;
  }
  let oa0 = offsets_a(row0, 0u);
  let oa1 = offsets_a(row0, 1u);
  let oa2 = offsets_a(row0, 2u);
  let oa3 = offsets_a(row0, 3u);
  let ob0 = offsets_b(col0, 0u);
  let ob1 = offsets_b(col0, 1u);
  let ob2 = offsets_b(col0, 2u);
  let ob3 = offsets_b(col0, 3u);

  // acc_IJ: rows 4I..4I+3 (matrix columns) x columns 4J..4J+3 (vector lanes) of the block.
  // Blocks with I >= NI or J >= NJ are compiled out (NI, NJ are constants).
  var acc00 = mat4x4<f32>();
  var acc01 = mat4x4<f32>();
  var acc02 = mat4x4<f32>();
  var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>();
  var acc11 = mat4x4<f32>();
  var acc12 = mat4x4<f32>();
  var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>();
  var acc21 = mat4x4<f32>();
  var acc22 = mat4x4<f32>();
  var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>();
  var acc31 = mat4x4<f32>();
  var acc32 = mat4x4<f32>();
  var acc33 = mat4x4<f32>();
  for (var q = 0u; q < p.K4; q++) {
    let b0 = load_b(q, ob0);
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    if (NJ > 1u) {
      b1 = load_b(q, ob1);
    }
    if (NJ > 2u) {
      b2 = load_b(q, ob2);
    }
    if (NJ > 3u) {
      b3 = load_b(q, ob3);
    }
    let a0 = load_a(q, oa0);
    acc00 = mac(acc00, b0, a0);
    if (NJ > 1u) {
      acc01 = mac(acc01, b1, a0);
    }
    if (NJ > 2u) {
      acc02 = mac(acc02, b2, a0);
    }
    if (NJ > 3u) {
      acc03 = mac(acc03, b3, a0);
    }
    if (NI > 1u) {
      let a1 = load_a(q, oa1);
      acc10 = mac(acc10, b0, a1);
      if (NJ > 1u) {
        acc11 = mac(acc11, b1, a1);
      }
      if (NJ > 2u) {
        acc12 = mac(acc12, b2, a1);
      }
      if (NJ > 3u) {
        acc13 = mac(acc13, b3, a1);
      }
    }
    if (NI > 2u) {
      let a2 = load_a(q, oa2);
      acc20 = mac(acc20, b0, a2);
      if (NJ > 1u) {
        acc21 = mac(acc21, b1, a2);
      }
      if (NJ > 2u) {
        acc22 = mac(acc22, b2, a2);
      }
      if (NJ > 3u) {
        acc23 = mac(acc23, b3, a2);
      }
    }
    if (NI > 3u) {
      let a3 = load_a(q, oa3);
      acc30 = mac(acc30, b0, a3);
      if (NJ > 1u) {
        acc31 = mac(acc31, b1, a3);
      }
      if (NJ > 2u) {
        acc32 = mac(acc32, b2, a3);
      }
      if (NJ > 3u) {
        acc33 = mac(acc33, b3, a3);
      }
    }
  }

  let g0 = col0 / 4u;
  let r1 = row0 + 4u;
  let r2 = row0 + 8u;
  let r3 = row0 + 12u;
  let bv0 = bias_of(g0);
  store(row0, g0, acc00, bv0);
  if (NI > 1u) {
    store(r1, g0, acc10, bv0);
  }
  if (NI > 2u) {
    store(r2, g0, acc20, bv0);
  }
  if (NI > 3u) {
    store(r3, g0, acc30, bv0);
  }
  if (NJ > 1u) {
    let bv1 = bias_of(g0 + 1u);
    store(row0, g0 + 1u, acc01, bv1);
    if (NI > 1u) {
      store(r1, g0 + 1u, acc11, bv1);
    }
    if (NI > 2u) {
      store(r2, g0 + 1u, acc21, bv1);
    }
    if (NI > 3u) {
      store(r3, g0 + 1u, acc31, bv1);
    }
  }
  if (NJ > 2u) {
    let bv2 = bias_of(g0 + 2u);
    store(row0, g0 + 2u, acc02, bv2);
    if (NI > 1u) {
      store(r1, g0 + 2u, acc12, bv2);
    }
    if (NI > 2u) {
      store(r2, g0 + 2u, acc22, bv2);
    }
    if (NI > 3u) {
      store(r3, g0 + 2u, acc32, bv2);
    }
  }
  if (NJ > 3u) {
    let bv3 = bias_of(g0 + 3u);
    store(row0, g0 + 3u, acc03, bv3);
    if (NI > 1u) {
      store(r1, g0 + 3u, acc13, bv3);
    }
    if (NI > 2u) {
      store(r2, g0 + 3u, acc23, bv3);
    }
    if (NI > 3u) {
      store(r3, g0 + 3u, acc33, bv3);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// pad: copies the top-left [rows, cols] of a row-major matrix with row stride src_stride into a
// [out_rows, out_stride] matrix, zero elsewhere. Pads operands (out_stride a multiple of 4,
// out_rows >= rows) so that `main` can read them as vec4 and step K by 4, and crops the padded
// result of `main` back to [M, N]. One invocation per output element, 256 per workgroup, linear
// workgroup index (split over y by the host).

struct PadParams {
  rows: u32,
  cols: u32,
  src_stride: u32,
  out_rows: u32,
  out_stride: u32,
}

@group(0) @binding(0) var<uniform> pp: PadParams;
@group(0) @binding(1) var<storage, read> pad_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pad_dst: array<f32>;

@compute @workgroup_size(256)
fn pad(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = (wid.x + wid.y * nwg.x) * 256u + li;
  if (i >= pp.out_rows * pp.out_stride) {
    return;
  }
  let r = i / pp.out_stride;
  let col = i % pp.out_stride;
  var v = 0.0;
  if (r < pp.rows && col < pp.cols) {
    v = pad_src[r * pp.src_stride + col];
  }
  pad_dst[i] = v;
}
