// im2col and col2im for conv2d on a two-dimensional grid, grid-stride loops in both directions.
//
// Notation: x (N, C, H, W), cols (N, C*KH*KW, OH*OW) with rows ordered (n, c, p, q) and columns
// (oh, ow): cols[n, (c*KH + p)*KW + q, oh*OW + ow] = x_pad[n, c, oh*SH + p, ow*SW + q].
//
// blockIdx.y walks the rows of cols (im2col) or the planes of x (col2im), blockIdx.x and threadIdx.x
// the pixels of one row. A thread then splits only a row number and a pixel number, both 32-bit:
// decoding one flat 64-bit index per element instead (six 64-bit divisions) made im2col 2.2x and
// col2im 1.5-2x slower on an H200. Only the start of a row or plane is a 64-bit offset: at FRRN B's
// 512x1024 the head's first 3x3 layer has 0.6 billion cols entries per image, past 2^31 from a batch
// of four, but one row has OH*OW of them. (The host checks that planes, rows and the grid-stride
// steps past them fit in 32 bits: ops._im2col_sizes, executor.launch_config_2d.)
//
// col2im is the adjoint, written as a *gather*: one thread per input pixel sums every cols entry
// that was read from it. No atomics, so the result is deterministic.

template <typename T>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H,
                            int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW) {
    const int pixels = OH * OW, rows = N * C * KH * KW;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int q = r % KW, p = (r / KW) % KH, plane = r / (KW * KH);  // plane = n*C + c
        const T* x_plane = x + (long long)plane * H * W;
        T* row = cols + (long long)r * pixels;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < pixels; j += blockDim.x * gridDim.x) {
            const int oh = j / OW, ow = j - oh * OW;
            const int h = oh * SH + p - PH, w = ow * SW + q - PW;
            row[j] = (h >= 0 && h < H && w >= 0 && w < W) ? x_plane[h * W + w] : (T)0;
        }
    }
}

template <typename T>
__device__ void col2im_impl(const T* __restrict__ cols, T* __restrict__ x, int N, int C, int H,
                            int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW) {
    const int pixels = OH * OW, planes = N * C;
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* plane_cols = cols + (long long)plane * KH * KW * pixels;  // rows (p, q) of (n, c)
        T* x_plane = x + (long long)plane * H * W;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < H * W; j += blockDim.x * gridDim.x) {
            const int h = j / W, w = j - h * W;
            T sum = 0;
            for (int p = 0; p < KH; ++p) {
                const int hp = h + PH - p;  // = oh * SH for the output rows that read (h, p)
                const int oh = hp / SH;
                if (hp < 0 || oh * SH != hp || oh >= OH) continue;
                for (int q = 0; q < KW; ++q) {
                    const int wq = w + PW - q;
                    const int ow = wq / SW;
                    if (wq < 0 || ow * SW != wq || ow >= OW) continue;
                    sum += plane_cols[(long long)(p * KW + q) * pixels + oh * OW + ow];
                }
            }
            x_plane[j] = sum;
        }
    }
}

extern "C" __global__ void im2col_f32(const float* x, float* cols,
    int N, int C, int H, int W, int KH, int KW,
    int SH, int SW, int PH, int PW, int OH, int OW) {
    im2col_impl<float>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void im2col_f64(const double* x, double* cols,
    int N, int C, int H, int W, int KH, int KW,
    int SH, int SW, int PH, int PW, int OH, int OW) {
    im2col_impl<double>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void col2im_f32(const float* cols, float* x,
    int N, int C, int H, int W, int KH, int KW,
    int SH, int SW, int PH, int PW, int OH, int OW) {
    col2im_impl<float>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void col2im_f64(const double* cols, double* x,
    int N, int C, int H, int W, int KH, int KW,
    int SH, int SW, int PH, int PW, int OH, int OW) {
    col2im_impl<double>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
