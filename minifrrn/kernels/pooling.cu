// Max pooling: forward one thread per output (value and argmax), backward a gather, one thread per
// input element summing the upstream gradients of the windows whose argmax is that element.
// The argmax is stored as the offset p*KW + q inside the window; ties go to the first maximum in
// row-major window order, as in the NumPy path; a window holding NaN gives NaN.

template <typename T>
__device__ void maxpool_forward_impl(const T* __restrict__ x, T* __restrict__ y,
                                     int* __restrict__ argmax, long long NC, long long H,
                                     long long W, long long KH, long long KW, long long SH,
                                     long long SW, long long OH, long long OW) {
    const long long total = NC * OH * OW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ow = i % OW;
        long long oh = (i / OW) % OH;
        long long nc = i / (OW * OH);
        const T* plane = x + nc * H * W;
        long long h0 = oh * SH, w0 = ow * SW;
        T best = plane[h0 * W + w0];
        int best_at = 0;
        for (long long p = 0; p < KH; ++p) {
            for (long long q = 0; q < KW; ++q) {
                T v = plane[(h0 + p) * W + w0 + q];
                // a NaN takes the window (the first NaN, as v > NaN is false after it), so that
                // a NaN activation reaches y as it does through the NumPy path's np.maximum
                if (v > best || (v != v && best == best)) { best = v; best_at = (int)(p * KW + q); }
            }
        }
        y[i] = best;
        argmax[i] = best_at;
    }
}

template <typename T>
__device__ void maxpool_backward_impl(const T* __restrict__ gy, const int* __restrict__ argmax,
                                      T* __restrict__ gx, long long NC, long long H, long long W,
                                      long long KH, long long KW, long long SH, long long SW,
                                      long long OH, long long OW) {
    const long long total = NC * H * W;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long w = i % W;
        long long h = (i / W) % H;
        long long nc = i / (W * H);
        // outputs whose window covers (h, w): oh*SH <= h < oh*SH + KH
        long long oh_lo = h >= KH ? (h - KH) / SH + 1 : 0;
        long long oh_hi = h / SH < OH - 1 ? h / SH : OH - 1;
        long long ow_lo = w >= KW ? (w - KW) / SW + 1 : 0;
        long long ow_hi = w / SW < OW - 1 ? w / SW : OW - 1;
        T sum = 0;
        for (long long oh = oh_lo; oh <= oh_hi; ++oh) {
            for (long long ow = ow_lo; ow <= ow_hi; ++ow) {
                long long o = (nc * OH + oh) * OW + ow;
                if (argmax[o] == (int)((h - oh * SH) * KW + (w - ow * SW))) sum += gy[o];
            }
        }
        gx[i] = sum;
    }
}

extern "C" __global__ void maxpool_forward_f32(const float* x, float* y, int* argmax, long long NC, long long H, long long W, long long KH, long long KW, long long SH, long long SW, long long OH, long long OW) {
    maxpool_forward_impl<float>(x, y, argmax, NC, H, W, KH, KW, SH, SW, OH, OW);
}
extern "C" __global__ void maxpool_forward_f64(const double* x, double* y, int* argmax, long long NC, long long H, long long W, long long KH, long long KW, long long SH, long long SW, long long OH, long long OW) {
    maxpool_forward_impl<double>(x, y, argmax, NC, H, W, KH, KW, SH, SW, OH, OW);
}
extern "C" __global__ void maxpool_backward_f32(const float* gy, const int* argmax, float* gx, long long NC, long long H, long long W, long long KH, long long KW, long long SH, long long SW, long long OH, long long OW) {
    maxpool_backward_impl<float>(gy, argmax, gx, NC, H, W, KH, KW, SH, SW, OH, OW);
}
extern "C" __global__ void maxpool_backward_f64(const double* gy, const int* argmax, double* gx, long long NC, long long H, long long W, long long KH, long long KW, long long SH, long long SW, long long OH, long long OW) {
    maxpool_backward_impl<double>(gy, argmax, gx, NC, H, W, KH, KW, SH, SW, OH, OW);
}
