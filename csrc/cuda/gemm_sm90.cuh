// Hopper (sm_90a) int8 GEMM for linear, y[M,N] = epilogue(x[M,K] . w[N,K]^T), and implicit-GEMM conv2d.
// Persistent, warp-specialised: warpgroup 0 is the TMA producer (one thread issues
// cp.async.bulk.tensor into a STAGES-deep ring of swizzled tiles, completing on mbarriers),
// warpgroups 1..BM/64 are consumers, each issuing wgmma.m64nBNk32 s32.s8.s8 on a 64-row slice and
// running the fused requant epilogue from registers. K tails, M and N edges are zero-filled by TMA.
// Linear requires K % 16 == 0 (TMA row stride) and 16-byte aligned x / w.
// Conv (CONV = true): the A tile of k-block (tap r,s; channels c0..c0+BK) is one TMA im2col load:
// BM output pixels walked in (n, oh, ow) order with the conv stride, shifted by the tap offset,
// padding zero-filled by the TMA unit; no im2col matrix exists anywhere. Weights [O, KH*KW*Cg] are the
// plain B operand. Needs groups == 1 and C % BK == 0 so a k-block never straddles two taps.
#pragma once
#include "common.cuh"
#include "wgmma_s8.cuh"
#include "launch.h"
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cstdio>
#include <mutex>

namespace i8c {
namespace sm90 {

// BK: bytes of K per stage = one swizzle row (128, 64 or 32 bytes, swizzled to match).

// Conv geometry for the im2col producer (CONV = true).
struct ConvGeom {
  int OH, OW, sh, sw, pt, pl, dh, dw, KW, cblocks;  // cblocks = C / BK (k-blocks per filter tap)
  int plain;  // 1x1, stride 1, no padding: A is the plain [M, C] matrix, loaded by tiled TMA
  // BUILT kernels (the stem): the NHWC input, read by the producer warpgroup itself
  const int8_t* x;
  int H, W, C;
  // HALO kernels: spatial tiles of HALO_TH x HALO_TW output pixels, tiles_w x tiles_h per image
  int KH, tiles_w, tiles_h;
};

// HALO conv tiles: 16 output rows x 8 columns (M row = 8 * row + column), 8 rows per consumer, so each
// 8-row wgmma core matrix is one output row segment. A stage holds KW halo boxes of (16 + KH - 1) x 8
// input pixels, box q shifted right by q columns, so tap (r, q)'s A operand is box q from row 8 c + r:
// a plain 64-byte-swizzled [64][64 B] tile on the 512-byte swizzle repeat (no descriptor base offset).
constexpr int HALO_TH = 16, HALO_TW = 8;
__host__ __device__ constexpr int halo_box_bytes(int KH) { return (HALO_TH + KH - 1) * HALO_TW * 64; }

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define I8C_SM90 1
#endif

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
#ifdef I8C_SM90
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
#endif
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
#ifdef I8C_SM90
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes)
               : "memory");
#endif
}
// Expect `bytes` more transaction bytes in the barrier's current phase, without arriving.
__device__ __forceinline__ void mbar_expect_tx_only(uint64_t* bar, uint32_t bytes) {
#ifdef I8C_SM90
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#ifdef I8C_SM90
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
#ifdef I8C_SM90
  asm volatile(
      "{\n.reg .pred P1;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@!P1 bra WAIT_%=;\n}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
#endif
}
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0,
                                            int c1) {
#ifdef I8C_SM90
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];" ::"r"(smem_u32(dst)),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(smem_u32(bar))
      : "memory");
#endif
}
// im2col load: {c, w, h, n} is the first pixel's window origin, {ow_off, oh_off} the filter tap.
__device__ __forceinline__ void tma_load_im2col(void* dst, const CUtensorMap* map, uint64_t* bar, int c, int w,
                                                int h, int n, uint16_t off_w, uint16_t off_h) {
#ifdef I8C_SM90
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
      "%4, %5}], [%6], {%7, %8};" ::"r"(smem_u32(dst)),
      "l"((uint64_t)map), "r"(c), "r"(w), "r"(h), "r"(n), "r"(smem_u32(bar)), "h"(off_w), "h"(off_h)
      : "memory");
#endif
}
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1,
                                            int c2, int c3) {
#ifdef I8C_SM90
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];" ::"r"(smem_u32(dst)),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_u32(bar))
      : "memory");
#endif
}
__device__ __forceinline__ void tma_load_5d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1,
                                            int c2, int c3, int c4) {
#ifdef I8C_SM90
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, "
      "%6}], [%7];" ::"r"(smem_u32(dst)),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4), "r"(smem_u32(bar))
      : "memory");
#endif
}
// The weights tile of k-block kt, column block tn: rows in channel order, or (PERM) in the accumulator
// order of acc_channel<true> through the 5-d map of make_perm16_map.
template <bool PERM, int BN, int BK>
__device__ __forceinline__ void tma_load_b(void* dst, const CUtensorMap* map, uint64_t* bar, int kt, int tn) {
  if constexpr (PERM) tma_load_5d(dst, map, bar, kt * BK, 0, 0, 0, tn * BN / 16);
  else tma_load_2d(dst, map, bar, kt * BK, tn * BN);
}
// wgmma shared-memory descriptor of a K-major tile whose rows are one BK-byte swizzle atom.
template <int BK>
__device__ __forceinline__ uint64_t desc_sw(const void* p) {
  static_assert(BK == 128 || BK == 64 || BK == 32, "BK must be 32, 64 or 128");
  uint64_t a = smem_u32(p);
  uint64_t d = 0;
  d |= (a & 0x3FFFF) >> 4;
  d |= (uint64_t)1 << 16;                  // LBO (unused for swizzled K-major)
  d |= (uint64_t)((8 * BK) >> 4) << 32;    // SBO: 8 rows x BK bytes
  d |= (uint64_t)(BK == 128 ? 1 : (BK == 64 ? 2 : 3)) << 62;  // 128 / 64 / 32-byte swizzle
  return d;
}
// desc moved by off16 x 16 bytes: the address is in the low word and stays below 2^18 >> 4 (no carry)
__device__ __forceinline__ uint64_t desc_at(uint64_t desc, uint32_t off16) {
  return (desc & 0xFFFFFFFF00000000ull) | (uint32_t)((uint32_t)desc + off16);
}
__device__ __forceinline__ void wg_fence() {
#ifdef I8C_SM90
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#ifdef I8C_SM90
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wg_wait() {
#ifdef I8C_SM90
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}
// Named barrier over `bar_id`'s 128 threads that also ANDs a predicate across them.
__device__ __forceinline__ bool bar_and(int bar_id, bool v) {
  int r = 1;
#ifdef I8C_SM90
  asm volatile(
      "{\n.reg .pred p, q;\nsetp.ne.s32 q, %1, 0;\nbar.red.and.pred p, %2, 128, q;\nselp.s32 %0, 1, 0, p;\n}\n"
      : "=r"(r)
      : "r"((int)v), "r"(bar_id)
      : "memory");
#endif
  return r != 0;
}
// TMA store of a staged smem tile (async proxy): writers fence their generic-proxy smem writes, one
// thread issues the store into a bulk group; the buffer may be rewritten once the group has been read.
__device__ __forceinline__ void fence_proxy_async_smem() {
#ifdef I8C_SM90
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int c0, int c1) {
#ifdef I8C_SM90
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"((uint64_t)map),
               "r"(c0), "r"(c1), "r"(smem_u32(src))
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#endif
}
__device__ __forceinline__ void tma_store_4d(const CUtensorMap* map, const void* src, int c0, int c1, int c2,
                                             int c3) {
#ifdef I8C_SM90
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%1, %2, %3, %4}], [%5];" ::"l"(
                   (uint64_t)map),
               "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_u32(src))
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#endif
}
__device__ __forceinline__ void tma_store_wait_read() {
#ifdef I8C_SM90
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
#endif
}
__device__ __forceinline__ void tma_store_wait_all() {
#ifdef I8C_SM90
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#endif
}

template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
#ifdef I8C_SM90
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(R));
#endif
}
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
#ifdef I8C_SM90
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(R));
#endif
}

// BSLOTS >= STAGES weights slots: the ring uses the first STAGES; resident B (one column block's
// weights loaded once) fills up to BSLOTS, so a 3x3 conv's nine k-blocks can stay without nine A stages.
// ABYTES: one A stage (HALO kernels: their KW halo boxes, a multiple of 1024 bytes).
template <int BM, int BN, int BK, int STAGES, int BSLOTS = STAGES, int ABYTES = BM * BK>
struct Smem {
  int8_t A[STAGES][ABYTES];
  int8_t B[BSLOTS][BN * BK];
  uint64_t full[STAGES];
  uint64_t empty[STAGES];
  uint64_t bres;  // resident B: the weights of this CTA's column block, loaded once into B[0 .. ktiles)
  uint64_t rres[2];  // per consumer: the residual tile has arrived in its staging tile (tma_res)
  int last[4];
  int turn;  // ping-pong: index of the unit whose main loop may run next
  alignas(16) int32_t ep[2][8 * BN];  // per consumer: the tile's channel parameters (chan_store layout)
};

// int8 output tiles are staged in shared memory, 64 x BN per block, dense rows in the TMA swizzle of
// their width (64 or 128 bytes: the 16-byte chunks of a row XOR-permuted by the row, so the char2
// writes of a warp's 8 rows hit distinct banks), and leave by TMA store (or 16-byte copies) when they fit.
template <int BM, int BN, int BK, int STAGES, bool PP, int BSLOTS = STAGES, int ABYTES = BM * BK>
struct OutStage {
  static constexpr int OSTRIDE = BN;
  static constexpr int ROWS = PP ? BM : 64;
  static constexpr size_t BYTES = (PP ? 2 : BM / 64) * ROWS * OSTRIDE;
  static constexpr size_t OFFSET = (sizeof(Smem<BM, BN, BK, STAGES, BSLOTS, ABYTES>) + 1023) & ~(size_t)1023;
  static constexpr bool ON = (BN == 64 || BN == 128) && OFFSET + BYTES + 1024 <= 227 * 1024;
};

// Byte offset of (row, col) in a staged tile: the CU_TENSOR_MAP_SWIZZLE_128B / 64B pattern (bits 4-6 /
// 4-5 of the offset XOR bits 7-9 / 7-8), the tile 1024-byte aligned.
template <int BN>
__device__ __forceinline__ int ostage_off(int row, int col) {
  const int off = row * BN + col;
  return off ^ (((off >> 7) & (BN == 128 ? 7 : 3)) << 4);
}

// Copy a staged 64 x BN tile to out with 16-byte stores where the destination allows it (the fallback
// when out cannot take a TMA store). Rows >= M and columns >= climit are skipped.
template <int BN>
__device__ __forceinline__ void copy_out_staged(const EpiParams& p, const int8_t* otile, long long grow0,
                                                int gcol0, int M, int climit, int tid) {
  constexpr int CH = BN / 16;
  const bool vec = (p.ldo % 16) == 0 && ((uintptr_t)p.out % 16) == 0;
  for (int i = tid; i < 64 * CH; i += 128) {
    const int rr = i / CH, cc = (i - rr * CH) * 16;
    const long long grow = grow0 + rr;
    const int gcol = gcol0 + cc;
    if (grow >= M || gcol >= climit) continue;
    int8_t* dst = reinterpret_cast<int8_t*>(p.out) + grow * p.ldo + gcol;
    const int8_t* src = otile + ostage_off<BN>(rr, cc);
    if (vec && gcol + 16 <= climit) {
      *reinterpret_cast<int4*>(dst) = *reinterpret_cast<const int4*>(src);
    } else {
#pragma unroll
      for (int e = 0; e < 16; ++e)
        if (gcol + e < climit) dst[e] = src[e];
    }
  }
}

// Tile t -> (tm, tn) without fixed_n: groups of 8 row blocks sweep the columns (L2 reuse of B for
// large GEMMs).
__device__ __forceinline__ void tile_coords(int t, int num_m, int num_n, int& tm, int& tn) {
  constexpr int GROUP_M = 8;
  int per_group = GROUP_M * num_n;
  int g = t / per_group;
  int first_m = g * GROUP_M;
  int gsz = min(num_m - first_m, GROUP_M);
  int r = t - g * per_group;
  tm = first_m + r % gsz;
  tn = r / gsz;
}

// A CTA's units, u = blockIdx.x, blockIdx.x + gridDim.x, ... in order: unit u is split sp of tile t
// (u = t * splits + sp). With fixed_n (splits == 1, gridDim.x a multiple of num_n) tiles go
// column-fastest, tm = t / num_n, tn = t % num_n, so a CTA keeps one column block (its channel
// parameters are staged once) and the num_n tiles of a row block run side by side (A read once from
// DRAM); its row block advances by gridDim.x / num_n, no integer division per tile (the consumers'
// per-tile divisions drew ~10% of the stall samples of the output-heavy 128 -> 512 1x1 conv: ncu,
// H200). Otherwise tile t is at tile_coords(t).
struct TileWalk {
  int num_m, num_n, splits, tm_next, tm_step, tn_fixed;
  bool fixed_n;
  __device__ TileWalk(int num_m_, int num_n_, int splits_, bool fixed_n_)
      : num_m(num_m_), num_n(num_n_), splits(splits_), fixed_n(fixed_n_) {
    tm_next = blockIdx.x / num_n;
    tn_fixed = blockIdx.x - tm_next * num_n;
    tm_step = gridDim.x / num_n;
  }
  __device__ __forceinline__ void next(int u, int& t, int& sp, int& tm, int& tn) {
    if (fixed_n) {
      t = u, sp = 0, tm = tm_next, tn = tn_fixed;
      tm_next += tm_step;
      return;
    }
    t = u / splits;
    sp = u - t * splits;
    tile_coords(t, num_m, num_n, tm, tn);
  }
};

// The fast epilogue into a staged int8 tile: no validity checks (rows >= M and channels >= N are
// computed but never copied out; only residual reads are guarded), one 16-byte channel record per
// two outputs, two int8 per 16-bit shared store.
// Addresses: a thread's rows lr and lr + 8 share one swizzle term x (ostage_off's XOR: bits 4-6 from
// the row), so column block j's byte is row_base + ((8 j) ^ x) + 2 (lane & 3), row lr + 8 one 8 * BN
// immediate further, and odd j 8 bytes after even j (x has no bit 3): one LOP per two column blocks
// instead of recomputing the swizzle per store (the epilogue's instruction count bounds the
// output-heavy layers).
// RES_STAGED: the residual tile was TMA-loaded into otile (same swizzle, zero outside the output), so
// each thread reads its residual pair from the 16-bit slot its result then overwrites.
template <int BN, int MODE, bool RES, int ACT, bool RES_STAGED = false>
__device__ __forceinline__ void stage_fast(const EpiParams& p, const int32_t* d, int r0, int lr, int n0, int M,
                                           int N, const int32_t* ep, int8_t* otile) {
  const int4* rec = reinterpret_cast<const int4*>(ep + 4 * BN);
  const int lane = threadIdx.x & 31;
  const int swz = ostage_off<BN>(lr, 0) - lr * BN;  // x: the XOR term of this thread's rows
  int8_t* row_base = otile + lr * BN + 2 * (lane & 3);
  // the channel records are read one column block ahead: each LDS's latency then overlaps the previous
  // block's arithmetic instead of stalling the bias add (ncu: short-scoreboard stalls on it)
  int4 next0 = rec[2 * (lane & 3)], next1 = rec[2 * (lane & 3) + 1];
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int cl = 8 * j + 2 * (lane & 3);
    int8_t* at = row_base + ((16 * (j / 2)) ^ swz) + 8 * (j % 2);
    const int4 q0 = next0, q1 = next1;
    if (j + 1 < BN / 8) next0 = rec[cl + 8], next1 = rec[cl + 9];
    const int rm0 = RES ? ep[3 * BN + cl] : 0, rm1 = RES ? ep[3 * BN + cl + 1] : 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int res0 = 0, res1 = 0;
      if constexpr (RES && RES_STAGED) {
        const char2 rr = *reinterpret_cast<const char2*>(at + 8 * BN * h);
        res0 = rr.x, res1 = rr.y;
      } else if constexpr (RES) {
        const int r = r0 + 8 * h, c = n0 + cl;
        const int8_t* rp = p.residual + (long long)r * p.ldo + c;
        res0 = (r < M && c < N) ? rp[0] : 0;
        res1 = (r < M && c + 1 < N) ? rp[1] : 0;
      }
      *reinterpret_cast<uint16_t*>(at + 8 * BN * h) =
          (uint16_t)fast_pair<MODE, RES, ACT>(p, q0, q1, d[4 * j + 2 * h], d[4 * j + 2 * h + 1], res0, res1, rm0, rm1);
    }
  }
}

// The channel of accumulator column block j's first column in this thread (the second is + 1): the wgmma
// layout, 8 j + 2 (lane & 3), or in PERM kernels, whose weights come with their rows permuted within
// each 16 channels (make_perm16_map), 16 (j / 2) + 4 (lane & 3) + 2 (j % 2): a thread's columns of
// blocks 2 g and 2 g + 1 are then the four contiguous channels 16 g + 4 (lane & 3) .. + 3.
template <bool PERM>
__device__ __forceinline__ int acc_channel(int j) {
  const int l = threadIdx.x & 3;
  return PERM ? 16 * (j / 2) + 4 * l + 2 * (j % 2) : 8 * j + 2 * l;
}

// stage_fast for PERM kernels (float requant, the bias already in the accumulators): per 16 channels
// and row, the thread's four contiguous results are one word (fast_quad: two packs, one LOP) and one
// 4-byte store, and the four scales one 16-byte load shared by both rows (against two 8-byte loads, two
// LOPs and two 2-byte stores per row pair of column blocks in stage_fast).
template <int BN, bool RES, int ACT, bool RES_STAGED = false>
__device__ __forceinline__ void stage_fast_perm(const EpiParams& p, const int32_t* d, int r0, int lr, int n0,
                                                int M, int N, const int32_t* ep, int8_t* otile) {
  const int swz = ostage_off<BN>(lr, 0) - lr * BN;  // the XOR term of this thread's rows (see stage_fast)
  const int cl0 = acc_channel<true>(0);
  int8_t* row_base = otile + lr * BN + cl0;
  const int32_t* scales = ep + BN + cl0;  // the scale row of chan_store's layout
  int4 next = *reinterpret_cast<const int4*>(scales);  // read one group ahead, as in stage_fast
#pragma unroll
  for (int g = 0; g < BN / 16; ++g) {
    int8_t* at = row_base + ((16 * g) ^ swz);
    const int4 sc = next;
    if (g + 1 < BN / 16) next = *reinterpret_cast<const int4*>(scales + 16 * (g + 1));
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // rows lr, lr + 8
      const int32_t acc[4] = {d[8 * g + 2 * h], d[8 * g + 2 * h + 1], d[8 * g + 4 + 2 * h], d[8 * g + 5 + 2 * h]};
      int32_t res[4] = {0, 0, 0, 0};
      if constexpr (RES && RES_STAGED) {
        const char4 rr = *reinterpret_cast<const char4*>(at + 8 * BN * h);
        res[0] = rr.x, res[1] = rr.y, res[2] = rr.z, res[3] = rr.w;
      } else if constexpr (RES) {
        const int r = r0 + 8 * h, c = n0 + cl0 + 16 * g;
        const int8_t* rp = p.residual + (long long)r * p.ldo + c;
#pragma unroll
        for (int q = 0; q < 4; ++q) res[q] = (r < M && c + q < N) ? rp[q] : 0;
      }
      *reinterpret_cast<uint32_t*>(at + 8 * BN * h) = fast_quad<RES, ACT>(p, sc, acc, res);
    }
  }
}

// One 64-row block's epilogue. STAGED: int8 results go through otile (this block's staging tile) and
// leave by TMA store (tmC, whose store thread has waited for the tile's previous store to be read) or
// with 16-byte copies (tmC == nullptr); brow0: its first global row. res_bar: the residual tile was
// TMA-loaded into otile (after the previous store had read it), complete at phase res_phase.
// PERM: the accumulator columns are acc_channel<true>'s, and the fast path's bias is in the accumulators.
template <int BN, int MODE, bool RES, bool FAST, bool STAGED, int ACT = ACT_CLAMP, bool PERM = false>
__device__ __forceinline__ void epilogue(const EpiParams& p, const int32_t* d, int row0, int n0, int M,
                                         int N, const int32_t* ep, int8_t* otile, int brow0, int bar_id,
                                         const CUtensorMap* tmC, uint64_t* res_bar = nullptr, int res_phase = 0,
                                         const int3* at = nullptr) {
  static_assert(!PERM || (MODE == INT8_FLOAT && STAGED), "PERM kernels: float requant, staged int8 tiles");
  int lane = threadIdx.x & 31;
  int r0 = row0 + (lane >> 2);
  bool ok0 = r0 < M, ok1 = (r0 + 8) < M;
  if constexpr (MODE != FLOAT_OUT && STAGED) {
    const int tid = threadIdx.x & 127;
    if (RES && res_bar) {
      mbar_wait(res_bar, res_phase);  // loaded after the last tile had left otile
    } else {
      if (tmC && tid == 0) tma_store_wait_read();
      asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");  // the last tile has left otile
    }
    int lr = r0 - brow0;
    if constexpr (FAST) {
      if constexpr (PERM) {
        if (RES && res_bar) stage_fast_perm<BN, RES, ACT, true>(p, d, r0, lr, n0, M, N, ep, otile);
        else stage_fast_perm<BN, RES, ACT>(p, d, r0, lr, n0, M, N, ep, otile);
      } else {
        if (RES && res_bar) stage_fast<BN, MODE, RES, ACT, true>(p, d, r0, lr, n0, M, N, ep, otile);
        else stage_fast<BN, MODE, RES, ACT>(p, d, r0, lr, n0, M, N, ep, otile);
      }
    } else {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        int cl = acc_channel<PERM>(j);
        int c = n0 + cl;
        bool v0 = c < N, v1 = (c + 1) < N;
        ChanP q0 = chan_from(ep, BN, cl), q1 = chan_from(ep, BN, cl + 1);
        *reinterpret_cast<char2*>(otile + ostage_off<BN>(lr, cl)) =
            epi_pair_i8<MODE, RES, false>(p, r0, c, d[4 * j + 0], d[4 * j + 1], v0 && ok0, v1 && ok0, q0, q1);
        *reinterpret_cast<char2*>(otile + ostage_off<BN>(lr + 8, cl)) =
            epi_pair_i8<MODE, RES, false>(p, r0 + 8, c, d[4 * j + 2], d[4 * j + 3], v0 && ok1, v1 && ok1, q0, q1);
      }
    }
    if (tmC) {
      fence_proxy_async_smem();
      asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
      if (tid == 0) {  // M / N (HALO: image) edges clipped by the TMA unit
        if (at) tma_store_4d(tmC, otile, n0, at->x, at->y, at->z);  // HALO: {column, row, image}
        else tma_store_2d(tmC, otile, n0, brow0);
      }
    } else {
      asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
      copy_out_staged<BN>(p, otile, brow0, n0, M, N, tid);
    }
  } else {
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      int cl = 8 * j + 2 * (lane & 3);
      int c = n0 + cl;
      bool v0 = c < N, v1 = (c + 1) < N;
      ChanP q0 = FAST ? chan_from_fast(ep, BN, cl) : chan_from(ep, BN, cl);
      ChanP q1 = FAST ? chan_from_fast(ep, BN, cl + 1) : chan_from(ep, BN, cl + 1);
      if (ok0) epi_store2q<MODE, RES, FAST>(p, r0, c, d[4 * j + 0], d[4 * j + 1], v0, v1, q0, q1);
      if (ok1) epi_store2q<MODE, RES, FAST>(p, r0 + 8, c, d[4 * j + 2], d[4 * j + 3], v0, v1, q0, q1);
    }
  }
}

// PERM kernels: each accumulator starts at its column's bias, so the fast float epilogue adds nothing
// (one instruction fewer per output). The biases come from the tile's bias quads in shared memory
// (bias_quad_store, at ep + 4 * BN), one 16-byte load per four accumulators (a row pair's column pair;
// from a plain bias row ptxas loaded 8 bytes and copied them with two moves): ptxas serialises the wgmma
// (C7515) when a global load (or a select of one) defines an accumulator.
template <int BN, int WGM>
__device__ __forceinline__ void bias_init(int32_t* d, const int32_t* ep) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const uint32_t at = smem_u32(ep + 4 * BN + 2 * acc_channel<true>(j));
#pragma unroll
    for (int mb = 0; mb < WGM; ++mb) {
      int32_t* dd = d + mb * (BN / 2) + 4 * j;
      asm volatile("ld.shared.v4.s32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(dd[0]), "=r"(dd[1]), "=r"(dd[2]), "=r"(dd[3])
                   : "r"(at));
    }
  }
}

// A PERM tile whose channels do not allow the fast epilogue: take the bias out again (exact, as int32
// arithmetic wraps) for the general epilogue, which adds it itself.
template <int BN, int WGM>
__device__ __forceinline__ void bias_remove(int32_t* d, const int32_t* ep_bias) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int cl = acc_channel<true>(j);
#pragma unroll
    for (int mb = 0; mb < WGM; ++mb)
#pragma unroll
      for (int i = 0; i < 4; ++i) d[mb * (BN / 2) + 4 * j + i] -= ep_bias[cl + (i & 1)];
  }
}

// Calls f(row, col, i) for each pair of adjacent accumulators d[i], d[i + 1] (columns col, col + 1) this
// thread holds in a 64-row block of a wgmma tile whose rows are < M.
template <int BN, typename F>
__device__ __forceinline__ void for_each_acc_pair(int row0, int n0, int M, F&& f) {
  const int lane = threadIdx.x & 31, r0 = row0 + (lane >> 2);
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (r0 + 8 * h < M) f(r0 + 8 * h, n0 + 8 * j + 2 * (lane & 3), 4 * j + 2 * h);
}

// Split-K: add this slice's partial sums into the int32 workspace (exact, order-free); returns
// true in the warpgroup that arrives last for the slice, which then holds the full sums in d and has
// reset its workspace slice and counter to zero (so the workspace stays zeroed between calls).
template <int BN>
__device__ __forceinline__ bool splitk_reduce(int32_t* d, int32_t* ws, int* cnt, int* last_flag, int slot,
                                              int splits, int row0, int n0, int M, int N, int bar_id) {
  const int tid = threadIdx.x & 127;
  for_each_acc_pair<BN>(row0, n0, M, [&](int r, int c, int i) {
    int32_t* q = ws + (long long)r * N + c;
    if (c < N) atomicAdd(q, d[i]);
    if (c + 1 < N) atomicAdd(q + 1, d[i + 1]);
  });
  __threadfence();
  asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
  if (tid == 0) *last_flag = (atomicAdd(cnt + slot, 1) == splits - 1);
  asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
  bool last = *last_flag;
  if (last) {
    __threadfence();
    for_each_acc_pair<BN>(row0, n0, M, [&](int r, int c, int i) {
      int32_t* q = ws + (long long)r * N + c;
      if (c < N) { d[i] = __ldcg(q); __stcg(q, 0); }
      if (c + 1 < N) { d[i + 1] = __ldcg(q + 1); __stcg(q + 1, 0); }
    });
    if (tid == 0) cnt[slot] = 0;
  }
  asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
  return last;
}

// The BUILT producer (a conv whose filter rows are short, KW * C <= 32 bytes with dw == 1: the RGB stem):
// its whole warpgroup writes the A tiles instead of a TMA im2col load. k-block kh of output pixel m is
// the KW * C contiguous bytes of input row oh * sh - pt + kh * dh from byte (ow * sw - pl) * C, zero
// outside the image and after KW * C: nine aligned 4-byte loads, funnel shifts, two 16-byte stores in
// the 32-byte swizzle. The weights ([O, KH, 32]: each filter row zero-padded to 32) come by TMA.
// Needs W * C % 4 == 0 and a 4-byte aligned x; one A row per producer thread (BM == 128, BK == 32).
template <int BM, int BN, int BK, int STAGES>
__device__ __forceinline__ void build_producer(Smem<BM, BN, BK, STAGES>& s, const CUtensorMap* tmB,
                                               const ConvGeom& g, int M, int units, int splits, int num_m,
                                               int num_n, bool fixed_n, int ktiles, int kps) {
  static_assert(BM == 128 && BK == 32, "one 32-byte A row per producer thread");
  const int r = threadIdx.x % 128;
  const int row_words = g.W * g.C / 4, L = g.KW * g.C;
  int it = 0;
  TileWalk walk(num_m, num_n, splits, fixed_n);
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    int t, sp, tm, tn;
    walk.next(u, t, sp, tm, tn);
    const int kb = sp * kps, ke = min(ktiles, kb + kps);
    const int m = tm * BM + r, plane = g.OH * g.OW;
    const int n = m / plane, oh = (m - n * plane) / g.OW, ow = m - n * plane - oh * g.OW;
    const int b0 = (ow * g.sw - g.pl) * g.C;     // the window row's first byte (< 0 in the left padding)
    const int q0 = b0 >> 2, shift = (b0 & 3) * 8;  // its word (rounded down) and byte offset in it
    const int32_t* img = reinterpret_cast<const int32_t*>(g.x) + (long long)n * g.H * row_words;
    for (int kt = kb; kt < ke; ++kt, ++it) {
      const int st = it % STAGES, ph = (it / STAGES) & 1;
      mbar_wait(&s.empty[st], ph ^ 1);
      if (r == 0) {
        mbar_expect_tx_only(&s.full[st], BN * BK);
        tma_load_2d(s.B[st], tmB, &s.full[st], kt * BK, tn * BN);
      }
      const int h = oh * g.sh - g.pt + kt * g.dh;
      const bool row_ok = m < M && h >= 0 && h < g.H;
      const int32_t* src = img + (long long)h * row_words;
      uint32_t w[9];
#pragma unroll
      for (int i = 0; i < 9; ++i) {
        const int q = q0 + i;
        w[i] = (row_ok && q >= 0 && q < row_words) ? (uint32_t)__ldg(src + q) : 0u;
      }
      uint32_t o[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint32_t v = __funnelshift_r(w[j], w[j + 1], shift);  // bytes b0 + 4j .. b0 + 4j + 3
        const int keep = L - 4 * j;                                 // of them inside the filter row
        o[j] = keep >= 4 ? v : (keep <= 0 ? 0u : v & ((1u << (8 * keep)) - 1u));
      }
      int8_t* arow = s.A[st] + r * BK;
      const int swz = ((r >> 2) & 1) * 16;  // CU_TENSOR_MAP_SWIZZLE_32B: 16-byte chunk ^= bit 7 of the offset
      *reinterpret_cast<uint4*>(arow + swz) = make_uint4(o[0], o[1], o[2], o[3]);
      *reinterpret_cast<uint4*>(arow + (16 ^ swz)) = make_uint4(o[4], o[5], o[6], o[7]);
      fence_proxy_async_smem();  // the generic-proxy writes, before wgmma reads them (async proxy)
      mbar_arrive(&s.full[st]);
    }
  }
}

// PERM kernels: the float-requant kernels specialised to that int8 epilogue whose tiles are staged. Their
// weights come channel-permuted within each 16 channels (make_perm16_map, acc_channel<true>: four
// contiguous channels per thread and row, stage_fast_perm) and their accumulators start at the bias
// (bias_init; every wgmma accumulates). Needs N % 16 == 0 (conv_sm90 routes other convs elsewhere).
template <int EPI, bool STAGED>
__host__ __device__ constexpr bool perm_kernel() { return EPI != EPI_ANY && epi_mode(EPI) == INT8_FLOAT && STAGED; }

// PP = ping-pong: the two consumer warpgroups take alternate BM x BN tiles (each issues BM/64 wgmma per
// k-step), so one's epilogue overlaps the other's main loop. Otherwise the consumers split a tile's rows.
// CPS: CTAs per SM (2: two co-resident CTAs, one's epilogue overlapping the other's main loop).
// Threads per CTA: the consumer warpgroups plus the producer, a whole warpgroup at one CTA per SM (it
// hands its registers to the consumers with setmaxnreg) or a single warp after the consumers at two
// CTAs per SM (fewer threads, so more registers each within the SM's file).
template <int BM, bool PP, int CPS>
constexpr int cta_threads() { return (PP ? 2 : BM / 64) * 128 + (CPS == 1 ? 128 : 32); }

// EPI: the epilogue compiled in (EPI_ANY, or one int8 (mode, residual) pair: no run-time dispatch and
// no split-K, so fewer registers and no spills at three or four CTAs per SM).
// BUILT: the producer warpgroup writes the A tiles itself (build_producer; CPS == 1).
// HALO: spatial tile tm -> {first output column, first output row, image}
__device__ __forceinline__ int3 halo_tile(const ConvGeom& g, int tm) {
  const int tw = tm % g.tiles_w, t2 = tm / g.tiles_w, th = t2 % g.tiles_h;
  return make_int3(tw * HALO_TW, th * HALO_TH, t2 / g.tiles_h);
}

template <int BM, int BN, int BK, int STAGES, bool PP, int CPS, bool CONV, int EPI, bool BUILT = false,
          int BSLOTS = STAGES, int HALO = 0>
__global__ void __launch_bounds__(cta_threads<BM, PP, CPS>(), CPS)
    gemm_kernel(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,
                const __grid_constant__ CUtensorMap tmOut, int M, int N, int K, EpiParams p, int splits, int32_t* ws,
                int* cnt, ConvGeom g, bool fixed_n, bool tma_out, bool resident_b,
                const __grid_constant__ CUtensorMap tmRes, bool tma_res) {
#ifdef I8C_SM90
  constexpr int NCONS = PP ? 2 : BM / 64;
  constexpr int WGM = PP ? BM / 64 : 1;   // 64-row blocks per consumer
  constexpr int ABYTES = HALO ? HALO * 1024 : BM * BK;
  using OS_ = OutStage<BM, BN, BK, STAGES, PP, BSLOTS, ABYTES>;
  constexpr bool PERM = perm_kernel<EPI, OS_::ON>();
  extern __shared__ uint8_t smem_raw[];
  // 1024-byte aligned (128-byte swizzle atoms) by pointer arithmetic on the shared array, not an integer
  // round trip, so the compiler still knows every pointer below is shared (LDS / STS, not generic LD / ST)
  uint8_t* base = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  auto& s = *reinterpret_cast<Smem<BM, BN, BK, STAGES, BSLOTS, ABYTES>*>(base);

  const int num_m = (M + BM - 1) / BM, num_n = (N + BN - 1) / BN;
  const int tiles = num_m * num_n;
  const int units = tiles * splits;
  const int ktiles = (K + BK - 1) / BK;
  const int kps = (ktiles + splits - 1) / splits;
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  constexpr int PRODUCER = CPS == 1 ? 0 : NCONS;  // the producer's warpgroup index

  if (threadIdx.x == 0) {
    for (int i = 0; i < STAGES; ++i) {
      mbar_init(&s.full[i], BUILT ? 128 : 1);  // BUILT: every producer thread arrives
      mbar_init(&s.empty[i], PP ? 1 : NCONS);
    }
    mbar_init(&s.bres, 1);
    mbar_init(&s.rres[0], 1);
    mbar_init(&s.rres[1], 1);
    s.turn = 0;
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == PRODUCER) {
    // (BUILT: the producer needs its registers; the consumers of a 64-channel tile need few)
    if constexpr (NCONS >= 2 && CPS == 1 && !BUILT) setmaxnreg_dec<40>();
    if constexpr (BUILT) {
      static_assert(CONV && CPS == 1 && BSLOTS == STAGES, "a built A tile needs the whole producer warpgroup");
      build_producer<BM, BN, BK, STAGES>(s, &tmB, g, M, units, splits, num_m, num_n, fixed_n, ktiles, kps);
    } else if (tid == 0) {
      // resident B (fixed_n, one k-slice, ktiles <= BSLOTS): this CTA's column block never changes,
      // so its weights are loaded once into B[0 .. ktiles) and each stage then brings only A
      const bool load_b = !(resident_b && blockIdx.x < units);
      if (!load_b) {
        mbar_expect_tx(&s.bres, (uint32_t)ktiles * BN * BK);
        for (int k = 0; k < ktiles; ++k) tma_load_b<PERM, BN, BK>(s.B[k], &tmB, &s.bres, k, blockIdx.x % num_n);
      }
      int it = 0;
      TileWalk walk(num_m, num_n, splits, fixed_n);
      for (int u = blockIdx.x; u < units; u += gridDim.x) {
        int t, sp, tm, tn;
        walk.next(u, t, sp, tm, tn);
        if constexpr (HALO != 0) {  // one stage per tile: its KW halo boxes, zero-filled past the image
          const int st = it % STAGES, ph = (it / STAGES) & 1;
          const int3 o = halo_tile(g, tm);
          mbar_wait(&s.empty[st], ph ^ 1);
          mbar_expect_tx(&s.full[st], (uint32_t)(g.KW * halo_box_bytes(g.KH)));
          for (int q = 0; q < g.KW; ++q)
            tma_load_4d(s.A[st] + q * halo_box_bytes(g.KH), &tmA, &s.full[st], 0, o.x - g.pl + q, o.y - g.pt, o.z);
          ++it;
          continue;
        }
        int kb = sp * kps, ke = min(ktiles, kb + kps);
        int img = 0, h0 = 0, w0 = 0;  // im2col conv: window origin of the tile's first output pixel
        if (CONV && !g.plain) {
          int m0 = tm * BM, plane = g.OH * g.OW;
          img = m0 / plane;
          int oh = (m0 - img * plane) / g.OW, ow = m0 - img * plane - oh * g.OW;
          h0 = oh * g.sh - g.pt;
          w0 = ow * g.sw - g.pl;
        }
        for (int kt = kb; kt < ke; ++kt, ++it) {
          int st = it % STAGES, ph = (it / STAGES) & 1;
          mbar_wait(&s.empty[st], ph ^ 1);
          mbar_expect_tx(&s.full[st], (BM + (load_b ? BN : 0)) * BK);
          if (CONV && !g.plain) {
            int tap = kt / g.cblocks, cb = kt - tap * g.cblocks;
            int r = tap / g.KW, q = tap - r * g.KW;
            tma_load_im2col(s.A[st], &tmA, &s.full[st], cb * BK, w0, h0, img, (uint16_t)(q * g.dw),
                            (uint16_t)(r * g.dh));
          } else {
            tma_load_2d(s.A[st], &tmA, &s.full[st], kt * BK, tm * BM);
          }
          if (load_b) tma_load_b<PERM, BN, BK>(s.B[st], &tmB, &s.full[st], kt, tn);
        }
      }
    }
  } else {
    if constexpr (NCONS >= 2 && CPS == 1 && !BUILT) setmaxnreg_inc<232>();
    // c through a shuffle: warp-uniform as far as the compiler knows (fewer per-wgmma descriptor
    // instructions in the main loop)
    const int c = __shfl_sync(0xffffffffu, CPS == 1 ? wg - 1 : wg, 0);
    // the main loop's descriptors: stage 0's, moved by 16-byte offsets (desc_at)
    const uint64_t desc_a0 = desc_sw<BK>(s.A[0]), desc_b0 = desc_sw<BK>(s.B[0]);
    int it = 0, j = 0;
    int32_t d[WGM * BN / 2];
    constexpr int PER = (BN + 127) / 128;  // channels per thread in chan_load
    const CUtensorMap* tmC = tma_out ? &tmOut : nullptr;
    // the clamp-free packing (fast_pair) only in the kernels specialised to one int8 epilogue; the
    // EPI_ANY kernel (GEMM, float outputs, split-K) keeps the min/max path: an earlier third epilogue
    // variant there made ptxas serialise the ping-pong wgmma
    const int act = EPI == EPI_ANY ? ACT_CLAMP : act_of(p.lo_i, p.hi_i);
    // fixed_n: this CTA's one column block; its channel parameters are staged once, here
    bool fast = false;
    const bool b_resident = resident_b && blockIdx.x < units;
    if (b_resident) mbar_wait(&s.bres, 0);
    if (fixed_n) {
      const auto chan = chan_load<PER>(p, (blockIdx.x % num_n) * BN, BN, N, tid, 128);
      fast = bar_and(1 + c, chan_store<PER, PERM>(p, chan, s.ep[c], BN, BN, K, tid, 128));
    }
    TileWalk walk(num_m, num_n, splits, fixed_n);
    for (int u = blockIdx.x; u < units; u += gridDim.x, ++j) {
      int t, sp, tm, tn;
      walk.next(u, t, sp, tm, tn);
      int kb = sp * kps, ke = min(ktiles, kb + kps);
      if (PP && (j & 1) != c) {  // the other consumer's unit: skip its stages
        it += max(ke - kb, 0);
        continue;
      }
      const int n0 = tn * BN;
      if constexpr (OS_::ON && !PP) {
        // tma_res: the residual tile comes into this consumer's staging tile while the main loop runs,
        // once the previous tile's store has read it (the epilogue then reads residuals from smem, not
        // with byte loads from global memory at the point of use)
        if (tma_res && tid == 0) {
          tma_store_wait_read();
          mbar_expect_tx(&s.rres[c], 64 * BN);
          tma_load_2d(reinterpret_cast<int8_t*>(base + OS_::OFFSET) + (size_t)c * OS_::ROWS * OS_::OSTRIDE, &tmRes,
                      &s.rres[c], n0, tm * BM + c * 64);
        }
      }
      ChanRegs<PER> chan;  // otherwise per tile: loaded now, the latency hidden behind the main loop
      if (!fixed_n) chan = chan_load<PER>(p, n0, BN, N, tid, 128);
      if constexpr (PERM) {
        if (!fixed_n) {  // this tile's bias quads now (the last epilogue is done with ep)
          stage_bias_quads(chan, s.ep[c], BN, BN, tid, 128);
          asm volatile("bar.sync %0, 128;" ::"r"(1 + c) : "memory");
        }
        bias_init<BN, WGM>(d, s.ep[c]);
      } else {
#pragma unroll
        for (int i = 0; i < WGM * BN / 2; ++i) d[i] = 0;
      }
      // Ping-pong order: a consumer waits on its unit's stages only after the other consumer has
      // waited on all of its previous unit's stages, so no mbarrier is waited on more than one phase
      // ahead (parity waits cannot tell phase n from n + 2).
      if (PP) {
        while (*(volatile int*)&s.turn != j) {
        }
      }
      int prev = -1;
      if constexpr (HALO != 0) {
        // tap (r, q) of consumer c: box q from row 8 c + r (rows of 8 pixels x 64 bytes), the weights
        // resident in B[tap]. One wgmma group per tile, each tap's descriptors the first ones plus byte
        // offsets / 16 (ncu: per-tap address arithmetic with a division was most of the consumers' issue)
        const int st = it % STAGES, ph = (it / STAGES) & 1;
        mbar_wait(&s.full[st], ph);
        const uint64_t da0 = desc_sw<BK>(s.A[st] + 8 * c * HALO_TW * BK), db0 = desc_sw<BK>(s.B[0]);
        const uint32_t box16 = halo_box_bytes(g.KH) >> 4, row16 = HALO_TW * BK >> 4, tap16 = BN * BK >> 4;
        for (uint32_t kt = 0, q = 0, a16 = 0; kt < (uint32_t)ktiles; ++kt) {  // a16: tap (r, q)'s offset / 16
          wg_fence();
#pragma unroll
          for (int kk = 0; kk < BK / 32; ++kk)  // + 32 bytes along K
            wgmma_s8<BN>(d, desc_at(da0, a16 + 2 * kk), desc_at(db0, kt * tap16 + 2 * kk),
                         (PERM || kt > 0 || kk > 0) ? 1 : 0);
          wg_commit();
          if (++q == (uint32_t)g.KW) q = 0, a16 += row16 - (g.KW - 1) * box16;
          else a16 += box16;
        }
        prev = st;
        ++it;
      }
      for (int kt = kb; kt < (HALO ? kb : ke); ++kt, ++it) {
        int st = it % STAGES, ph = (it / STAGES) & 1;
        mbar_wait(&s.full[st], ph);
        wg_fence();
        const uint32_t b16 = (b_resident ? kt : st) * (BN * BK / 16);
#pragma unroll
        for (int kk = 0; kk < BK / 32; ++kk)
#pragma unroll
          for (int mb = 0; mb < WGM; ++mb) {
            const uint32_t a16 = (st * ABYTES + (PP ? mb : c) * 64 * BK) / 16;
            wgmma_s8<BN>(d + mb * (BN / 2), desc_at(desc_a0, a16 + 2 * kk), desc_at(desc_b0, b16 + 2 * kk),
                         (PERM || kt > kb || kk > 0) ? 1 : 0);
          }
        wg_commit();
        wg_wait<1>();
        if (prev >= 0 && tid == 0) mbar_arrive(&s.empty[prev]);
        prev = st;
      }
      if (PP) {
        asm volatile("bar.sync %0, 128;" ::"r"(1 + c) : "memory");
        if (tid == 0) {
          __threadfence_block();
          *(volatile int*)&s.turn = j + 1;
        }
      }
      wg_wait<0>();
      if (prev >= 0 && tid == 0) mbar_arrive(&s.empty[prev]);
      if (!fixed_n) {
        asm volatile("bar.sync %0, 128;" ::"r"(1 + c) : "memory");  // last epilogue done with ep[c]
        // stage the tile's channel parameters; the fast epilogue runs when all of them allow it
        fast = bar_and(1 + c, chan_store<PER, PERM>(p, chan, s.ep[c], BN, BN, K, tid, 128));
      }
      if constexpr (PERM) {
        if (!fast) bias_remove<BN, WGM>(d, s.ep[c]);
      }
#pragma unroll
      for (int mb = 0; mb < WGM; ++mb) {
        const int row0 = tm * BM + (PP ? mb : c) * 64 + (tid / 32) * 16;
        int32_t* dm = d + mb * (BN / 2);
        if (EPI == EPI_ANY && splits > 1) {
          int slot = PP ? t * WGM + mb : t * NCONS + c;
          if (!splitk_reduce<BN>(dm, ws, cnt, &s.last[c], slot, splits, row0, n0, M, N, 1 + c)) continue;
        }
        int8_t* otile = nullptr;
        if constexpr (OS_::ON)
          otile = reinterpret_cast<int8_t*>(base + OS_::OFFSET) +
                  (size_t)(c * OS_::ROWS + mb * 64) * OS_::OSTRIDE;
        const int brow0 = tm * BM + (PP ? mb : c) * 64;
        uint64_t* res_bar = tma_res ? &s.rres[c] : nullptr;  // one residual tile per unit: phase j & 1
        int3 at{};  // HALO: where this consumer's 8 x 8 output block goes
        if constexpr (HALO != 0) {
          at = halo_tile(g, tm);
          at.y += 8 * c;
        }
#define I8C_SM90_EPI_ACT(MODE_, RES_, FAST_, ACT_) \
  epilogue<BN, MODE_, RES_, FAST_, OS_::ON, ACT_, PERM>(p, dm, row0, n0, M, N, s.ep[c], otile, brow0, 1 + c, tmC, res_bar, \
                                                  j & 1, HALO ? &at : nullptr)
#define I8C_SM90_EPI(MODE_, RES_)                                                       \
  if (fast && act == ACT_NONE) I8C_SM90_EPI_ACT(MODE_, RES_, true, ACT_NONE);           \
  else if (fast && act == ACT_RELU) I8C_SM90_EPI_ACT(MODE_, RES_, true, ACT_RELU);      \
  else if (fast) I8C_SM90_EPI_ACT(MODE_, RES_, true, ACT_CLAMP);                        \
  else I8C_SM90_EPI_ACT(MODE_, RES_, false, ACT_CLAMP)
        if constexpr (EPI == EPI_ANY) I8C_EPI_DISPATCH(p, I8C_SM90_EPI);
        else I8C_SM90_EPI(epi_mode(EPI), epi_residual(EPI));
#undef I8C_SM90_EPI
#undef I8C_SM90_EPI_ACT
      }
    }
    if (tmC && tid == 0) tma_store_wait_all();  // smem stays valid until this thread's stores have read it
  }
#endif
}

template <typename Fn>
static Fn driver_entry(const char* name) {
  void* ptr = nullptr;
  cudaDriverEntryPointQueryResult q;
  if (cudaGetDriverEntryPointByVersion(name, &ptr, 12000, cudaEnableDefault, &q) == cudaSuccess &&
      q == cudaDriverEntryPointSuccess)
    return reinterpret_cast<Fn>(ptr);
  return nullptr;
}

static CUtensorMapSwizzle swizzle_of(int bk) {
  return bk == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : (bk == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_32B);
}

// One cuTensorMapEncodeTiled call for an int8 tensor of RANK dimensions (dims[0] innermost, strides in
// bytes of dims 1 .. RANK - 1), boxes `box`, swizzled by `swizzle_bytes` (the box's inner bytes).
template <int RANK>
static const char* encode_tiled(CUtensorMap* map, const void* ptr, const cuuint64_t (&dims)[RANK],
                                const cuuint64_t (&strides)[RANK - 1], const cuuint32_t (&box)[RANK],
                                int swizzle_bytes) {
  static auto enc = driver_entry<PFN_cuTensorMapEncodeTiled_v12000>("cuTensorMapEncodeTiled");
  if (!enc) return "cuTensorMapEncodeTiled unavailable";
  cuuint32_t estr[RANK];
  for (auto& e : estr) e = 1;
  CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, RANK, const_cast<void*>(ptr), dims, strides, box, estr,
                   CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle_of(swizzle_bytes), CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? nullptr : "cuTensorMapEncodeTiled failed";
}

// [rows, K] row-major int8 (row stride `ld` bytes, default K), boxes of box_rows x bk bytes.
static const char* make_map(CUtensorMap* map, const void* ptr, int rows, int K, int box_rows, int bk,
                            long long ld = 0) {
  const cuuint64_t dims[2] = {(cuuint64_t)K, (cuuint64_t)rows};
  const cuuint64_t strides[1] = {(cuuint64_t)(ld ? ld : K)};
  const cuuint32_t box[2] = {(cuuint32_t)bk, (cuuint32_t)box_rows};
  return encode_tiled(map, ptr, dims, strides, box, bk);
}

// NHWC int8 input as an im2col map: each load yields box_rows output pixels x bk channels. The pixel
// window spans the first to the last window origin, (O-1) * stride + 1 positions per spatial dim.
static const char* make_im2col_map(CUtensorMap* map, const void* x, const ConvShape& s, int box_rows, int bk) {
  static auto enc = driver_entry<PFN_cuTensorMapEncodeIm2col_v12000>("cuTensorMapEncodeIm2col");
  if (!enc) return "cuTensorMapEncodeIm2col unavailable";
  cuuint64_t dims[4] = {(cuuint64_t)s.C, (cuuint64_t)s.W, (cuuint64_t)s.H, (cuuint64_t)s.N};
  cuuint64_t strides[3] = {(cuuint64_t)s.C, (cuuint64_t)s.W * s.C, (cuuint64_t)s.H * s.W * s.C};
  int lower[2] = {-s.pl, -s.pt};
  int upper[2] = {(s.OW - 1) * s.sw - s.pl - (s.W - 1), (s.OH - 1) * s.sh - s.pt - (s.H - 1)};
  cuuint32_t estr[4] = {1, (cuuint32_t)s.sw, (cuuint32_t)s.sh, 1};
  CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void*>(x), dims, strides, lower, upper,
                   (cuuint32_t)bk, (cuuint32_t)box_rows, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle_of(bk),
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? nullptr : "cuTensorMapEncodeIm2col failed";
}

// The weights [N, K] of a PERM kernel, loaded with each 16 channels' rows in acc_channel<true> order: smem
// row 8 jj + 2 l + e of group g holds channel 16 g + 4 l + 2 jj + e. A 5-d view {K, e, l, jj, g} whose
// strides reorder the channel's bits (K, 4 K, 2 K, 16 K bytes); boxes {bk, 2, 4, 2, bn / 16} land in
// shared memory like the 2-d map's [bn][bk] boxes, swizzle included. Needs N % 16 == 0 (a partial group's
// missing channels would be read from past the tensor: the TMA unit bounds each dimension alone).
static const char* make_perm16_map(CUtensorMap* map, const void* B, int N, int K, int bn, int bk) {
  if (N % 16 || bn % 16) return "internal: channel-permuted weights need N % 16 == 0";
  const cuuint64_t k = (cuuint64_t)K;
  const cuuint64_t dims[5] = {k, 2, 4, 2, (cuuint64_t)(N / 16)};
  const cuuint64_t strides[4] = {k, 4 * k, 2 * k, 16 * k};
  const cuuint32_t box[5] = {(cuuint32_t)bk, 2, 4, 2, (cuuint32_t)(bn / 16)};
  return encode_tiled(map, B, dims, strides, box, bk);
}

// Why a HALO conv kernel cannot take this call (nullptr: it can). Its stage holds the KW halo boxes and
// its stores go through a 4-d output map, so: stride 1, no dilation, one k-block per filter tap
// (C == BK), the taps' weights resident, int8 out by TMA store, no residual, no split-K.
template <int BM, int BK, int BSLOTS, int ABYTES>
static const char* halo_unfit(const ConvShape& c, const EpiParams& p, int splits) {
  if (c.sh != 1 || c.sw != 1 || c.dh != 1 || c.dw != 1) return "halo conv: stride and dilation must be 1";
  if (c.Cg != BK || c.groups != 1) return "halo conv: needs C == 64, groups 1";
  if (c.KH * c.KW > BSLOTS) return "halo conv: more filter taps than weight slots";
  if (c.KW * halo_box_bytes(c.KH) > ABYTES) return "halo conv: the halo boxes exceed a stage";
  if (p.mode == FLOAT_OUT || p.residual || splits > 1) return "halo conv: int8 out only, no residual, no split-K";
  if ((uintptr_t)p.out % 16 || p.ldo % 16) return "halo conv: output rows must be 16-byte aligned";
  return nullptr;
}

// Launch one instantiation. conv == nullptr: linear (A = x [M, K]); else A is the im2col view of x.
// HALO (its A stage in KB; 0: none): spatial tiles whose A comes as KW halo boxes per tile (halo_unfit
// says when it cannot).
template <int BM, int BN, int BK, int STAGES, bool PP, int CPS = 1, bool CONV = false, int EPI = EPI_ANY,
          bool BUILT = false, int BSLOTS = STAGES, int HALO = 0>
static const char* launch(const int8_t* A, const int8_t* B, int M, int N, int K, const EpiParams& p,
                          int num_sms, int max_ctas, int splits, int32_t* ws, int* cnt, cudaStream_t stream,
                          const ConvShape* conv = nullptr) {
  static_assert(!HALO || (CONV && !BUILT && !PP && BM == 128 && BK == 64), "HALO: a 128-row conv, 64-byte k-blocks");
  constexpr int ABYTES = HALO ? HALO * 1024 : BM * BK;
  CUtensorMap ma, mb;
  ConvGeom g{};
  CUtensorMap mc{};
  bool tma_out = false;
  if constexpr (HALO != 0) {
    const ConvShape& c = *conv;
    if (const char* e = halo_unfit<BM, BK, BSLOTS, ABYTES>(c, p, splits)) return e;
    const cuuint64_t xdims[4] = {(cuuint64_t)c.C, (cuuint64_t)c.W, (cuuint64_t)c.H, (cuuint64_t)c.N};
    const cuuint64_t xstr[3] = {(cuuint64_t)c.C, (cuuint64_t)c.W * c.C, (cuuint64_t)c.H * c.W * c.C};
    const cuuint32_t xbox[4] = {(cuuint32_t)BK, (cuuint32_t)HALO_TW, (cuuint32_t)(HALO_TH + c.KH - 1), 1};
    if (const char* e = encode_tiled(&ma, A, xdims, xstr, xbox, BK)) return e;
    const cuuint64_t odims[4] = {(cuuint64_t)N, (cuuint64_t)c.OW, (cuuint64_t)c.OH, (cuuint64_t)c.N};
    const cuuint64_t ostr[3] = {(cuuint64_t)p.ldo, (cuuint64_t)p.ldo * c.OW, (cuuint64_t)p.ldo * c.OW * c.OH};
    const cuuint32_t obox[4] = {(cuuint32_t)BN, (cuuint32_t)HALO_TW, 8, 1};  // one consumer's 8 x 8 block
    if (const char* e = encode_tiled(&mc, p.out, odims, ostr, obox, (int)obox[0])) return e;
    tma_out = true;
    const int tiles_w = (c.OW + HALO_TW - 1) / HALO_TW, tiles_h = (c.OH + HALO_TH - 1) / HALO_TH;
    g = ConvGeom{c.OH, c.OW, 1, 1, c.pt, c.pl, 1, 1, c.KW, 1, 0, nullptr, c.H, c.W, c.C, c.KH, tiles_w, tiles_h};
    M = c.N * tiles_h * tiles_w * BM;  // rows of the tile walk (spatial tiles, BM pixels each)
  } else if constexpr (BUILT) {  // A is written by the producer warpgroup from x; B is [N, KH * 32]
    const ConvShape& c = *conv;
    ma = CUtensorMap{};
    g = ConvGeom{c.OH, c.OW, c.sh, c.sw, c.pt, c.pl, c.dh, c.dw, c.KW, 1, 0, A, c.H, c.W, c.C};
  } else if constexpr (CONV) {
    const ConvShape& c = *conv;
    const bool plain = c.KH == 1 && c.KW == 1 && c.sh == 1 && c.sw == 1 && c.pt == 0 && c.pl == 0 &&
                       c.OH == c.H && c.OW == c.W;
    if (const char* e = plain ? make_map(&ma, A, M, c.C, BM, BK) : make_im2col_map(&ma, A, c, BM, BK)) return e;
    g = ConvGeom{c.OH, c.OW, c.sh, c.sw, c.pt, c.pl, c.dh, c.dw, c.KW, c.C / BK, plain, nullptr, 0, 0, 0};
  } else {
    if (const char* e = make_map(&ma, A, M, K, BM, BK)) return e;
  }
  using OS_ = OutStage<BM, BN, BK, STAGES, PP, BSLOTS, ABYTES>;
  if (const char* e = perm_kernel<EPI, OS_::ON>() ? make_perm16_map(&mb, B, N, K, BN, BK) : make_map(&mb, B, N, K, BN, BK))
    return e;
  static_assert(!HALO || OS_::ON, "HALO: the output must be staged for its 4-d store");
  // int8 tiles leave by TMA store when the output can be a tensor map (16-byte aligned rows)
  if (!HALO)
    tma_out = OS_::ON && p.mode != FLOAT_OUT && (uintptr_t)p.out % 16 == 0 && p.ldo % 16 == 0 &&
              make_map(&mc, p.out, M, N, 64, BN, p.ldo) == nullptr;
  size_t smem = (OS_::ON ? OS_::OFFSET + OS_::BYTES : sizeof(Smem<BM, BN, BK, STAGES, BSLOTS, ABYTES>)) + 1024;
  auto kern = gemm_kernel<BM, BN, BK, STAGES, PP, CPS, CONV, EPI, BUILT, BSLOTS, HALO>;
  static bool attr_set = false;  // per instantiation
  if (!attr_set) {
    if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
      return "cudaFuncSetAttribute failed";
    attr_set = true;
  }
  if (splits < 1) splits = 1;
  if (splits > 1 && (!ws || !cnt)) return "split-K needs a workspace";
  if (EPI != EPI_ANY && (splits > 1 || p.mode != epi_mode(EPI) || (p.residual != nullptr) != epi_residual(EPI)))
    return "internal: epilogue-specialised kernel launched for another epilogue or with split-K";
  const int num_n = (N + BN - 1) / BN;
  int units = ((M + BM - 1) / BM) * num_n * splits;
  int grid = units < num_sms * CPS ? units : num_sms * CPS;
  if (max_ctas > 0 && grid > max_ctas) grid = max_ctas;
  // Column-fastest order with one column block per CTA (see TileWalk) when a multiple of num_n
  // CTAs fills >= 96% of the grid: few column blocks, so B stays in L2 in this order anyway.
  const int grid_n = grid / num_n * num_n;
  const bool fixed_n = splits == 1 && num_n <= 16 && grid_n * 100 >= grid * 96;
  if (fixed_n) grid = grid_n;
  int threads = cta_threads<BM, PP, CPS>();
  // resident B (the CTA's weights loaded once): possible with one column block per CTA and K within the
  // stage ring; chosen when each CTA runs >= 4 tiles (H200, ResNet-50 batch 256, same process: 256->128
  // 1x1 195 -> 107 us, the conv sum 1.012x; at batch 1, 1-2 tiles per CTA, waiting for all of B first
  // cost 0.3-0.7 us a layer). INT8COMPILE_SM90_RESIDENT_B=0 / 1 turns it off / on wherever possible.
  const bool can_resident = !BUILT && !PP && fixed_n && (K + BK - 1) / BK <= BSLOTS;  // fixed_n: no split-K
  const char* rb = getenv("INT8COMPILE_SM90_RESIDENT_B");
  const bool resident_b = can_resident && (HALO || (rb && *rb ? *rb == '1' : units >= 4 * grid));
  if (HALO && !resident_b) return "halo conv: its weights must stay resident (one column block per CTA)";
  // the residual tile by TMA into the staging tile (same map shape and swizzle as the output's); not with
  // ping-pong or split-K, whose consumers do not run one epilogue per unit each.
  // INT8COMPILE_SM90_TMA_RESIDUAL=0: byte loads from global instead, for an A/B (H200, a residual on every
  // ResNet-50 conv at batch 256: 4.72 ms with the TMA load, 6.85 ms with byte loads)
  CUtensorMap mr{};
  const char* tr = getenv("INT8COMPILE_SM90_TMA_RESIDUAL");
  const bool tma_res = !HALO && tma_out && !PP && splits == 1 && p.residual && (uintptr_t)p.residual % 16 == 0 &&
                       !(tr && *tr == '0') && make_map(&mr, p.residual, M, N, 64, BN, p.ldo) == nullptr;
  kern<<<grid, threads, smem, stream>>>(ma, mb, mc, M, N, K, p, splits, ws, cnt, g, fixed_n, tma_out, resident_b,
                                        mr, tma_res);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace sm90
}  // namespace i8c
