// Per-channel sums over (N, H, W): the statistics of batch norm and the bias gradient of conv2d.
//
// partial[c, t] = sum over n, and over the pixels j = t, t + T, t + 2T, ... of channel c,
//                 of x[n, c, j]                  (power 1; shift is not read)
//                 or (x[n, c, j] - shift[c])^2    (power 2)            (T = blockDim.x * gridDim.x)
//
// blockIdx.y is the channel; each of the T threads of a channel writes its own partial sum, and one
// matrix-vector product with ones (ops._row_sums: a single cuBLAS call) finishes the job.
// Consecutive threads read consecutive pixels, so every load is coalesced, and there is no shared
// memory to manage.
// Summing a whole channel with one of CuPy's reductions over axes (0, 2, 3) instead gives each
// channel one block: 3.4x slower on an H200 for 48 channels of 256x512 (0.091 vs 0.027 ms).
//
// With power 2 and shift = the mean this is the variance's sum of squares, two-pass and centred
// (no E[x^2] - E[x]^2 cancellation in float32).

template <typename T>
__device__ void channel_sums_impl(const T* __restrict__ x, const T* __restrict__ shift,
                                  T* __restrict__ partial, long long N, long long C, long long HW,
                                  long long power) {
    const long long threads = (long long)blockDim.x * gridDim.x;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long c = blockIdx.y; c < C; c += gridDim.y) {
        const T s = power == 2 ? shift[c] : (T)0;
        T sum = 0;
        for (long long n = 0; n < N; ++n) {
            const T* plane = x + (n * C + c) * HW;
            for (long long j = t; j < HW; j += threads) {
                const T v = plane[j] - s;
                sum += power == 2 ? v * v : v;
            }
        }
        partial[c * threads + t] = sum;
    }
}

extern "C" __global__ void channel_sums_f32(const float* x, const float* shift, float* partial, long long N, long long C, long long HW, long long power) {
    channel_sums_impl<float>(x, shift, partial, N, C, HW, power);
}
extern "C" __global__ void channel_sums_f64(const double* x, const double* shift, double* partial, long long N, long long C, long long HW, long long power) {
    channel_sums_impl<double>(x, shift, partial, N, C, HW, power);
}
