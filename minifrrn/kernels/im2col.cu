// im2col and col2im for conv2d, one thread per element, grid-stride loops, 64-bit offsets.
//
// Notation: x (N, C, H, W), cols (N, C*KH*KW, OH*OW) with rows ordered (c, p, q) and columns
// (oh, ow): cols[n, (c*KH + p)*KW + q, oh*OW + ow] = x_pad[n, c, oh*SH + p, ow*SW + q].
// col2im is the adjoint, written as a *gather*: one thread per input pixel sums every column
// entry that was read from it. No atomics, so the result is deterministic.

template <typename T>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ cols, long long N, long long C,
                            long long H, long long W, long long KH, long long KW, long long SH,
                            long long SW, long long PH, long long PW, long long OH, long long OW) {
    const long long total = N * C * KH * KW * OH * OW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ow = i % OW;
        long long oh = (i / OW) % OH;
        long long q = (i / (OW * OH)) % KW;
        long long p = (i / (OW * OH * KW)) % KH;
        long long c = (i / (OW * OH * KW * KH)) % C;
        long long n = i / (OW * OH * KW * KH * C);
        long long h = oh * SH + p - PH;
        long long w = ow * SW + q - PW;
        T value = 0;
        if (h >= 0 && h < H && w >= 0 && w < W) value = x[((n * C + c) * H + h) * W + w];
        cols[i] = value;  // i enumerates cols in its own memory order
    }
}

template <typename T>
__device__ void col2im_impl(const T* __restrict__ cols, T* __restrict__ x, long long N, long long C,
                            long long H, long long W, long long KH, long long KW, long long SH,
                            long long SW, long long PH, long long PW, long long OH, long long OW) {
    const long long total = N * C * H * W;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long w = i % W;
        long long h = (i / W) % H;
        long long c = (i / (W * H)) % C;
        long long n = i / (W * H * C);
        T sum = 0;
        for (long long p = 0; p < KH; ++p) {
            long long hp = h + PH - p;  // = oh * SH for the output rows that read (h, p)
            if (hp < 0 || hp % SH != 0) continue;
            long long oh = hp / SH;
            if (oh >= OH) continue;
            for (long long q = 0; q < KW; ++q) {
                long long wq = w + PW - q;
                if (wq < 0 || wq % SW != 0) continue;
                long long ow = wq / SW;
                if (ow >= OW) continue;
                sum += cols[((n * C + c) * KH * KW + p * KW + q) * (OH * OW) + oh * OW + ow];
            }
        }
        x[i] = sum;
    }
}

extern "C" __global__ void im2col_f32(const float* x, float* cols,
    long long N, long long C, long long H, long long W, long long KH, long long KW,
    long long SH, long long SW, long long PH, long long PW, long long OH, long long OW) {
    im2col_impl<float>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void im2col_f64(const double* x, double* cols,
    long long N, long long C, long long H, long long W, long long KH, long long KW,
    long long SH, long long SW, long long PH, long long PW, long long OH, long long OW) {
    im2col_impl<double>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void col2im_f32(const float* cols, float* x,
    long long N, long long C, long long H, long long W, long long KH, long long KW,
    long long SH, long long SW, long long PH, long long PW, long long OH, long long OW) {
    col2im_impl<float>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
extern "C" __global__ void col2im_f64(const double* cols, double* x,
    long long N, long long C, long long H, long long W, long long KH, long long KW,
    long long SH, long long SW, long long PH, long long PW, long long OH, long long OW) {
    col2im_impl<double>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
