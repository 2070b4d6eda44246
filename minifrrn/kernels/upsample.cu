// Upsampling. Nearest (integer scale S): forward one thread per output, backward a gather, one
// thread per input summing its S x S block. FRRN's bilinear x2 (Theano semantics, separable): along
// an axis of length L, out[2m] = x[m], out[2m+1] = (x[m] + x[m+1]) / 2, out[2L-1] = x[L-1];
// its adjoint is a gather over the (at most three) outputs per axis that read each input.

template <typename T>
__device__ void nearest_forward_impl(const T* __restrict__ x, T* __restrict__ y, long long NC,
                                     long long H, long long W, long long S) {
    const long long OH = H * S, OW = W * S, total = NC * OH * OW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ow = i % OW;
        long long oh = (i / OW) % OH;
        long long nc = i / (OW * OH);
        y[i] = x[(nc * H + oh / S) * W + ow / S];
    }
}

template <typename T>
__device__ void nearest_backward_impl(const T* __restrict__ gy, T* __restrict__ gx, long long NC,
                                      long long H, long long W, long long S) {
    const long long OW = W * S, total = NC * H * W;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long w = i % W;
        long long h = (i / W) % H;
        long long nc = i / (W * H);
        T sum = 0;
        for (long long p = 0; p < S; ++p)
            for (long long q = 0; q < S; ++q)
                sum += gy[(nc * H * S + h * S + p) * OW + w * S + q];
        gx[i] = sum;
    }
}

// taps of output index o along an axis of length L: up to two (index, weight) pairs
template <typename T>
__device__ __forceinline__ int bilinear_taps(long long o, long long L, long long* idx, T* wt) {
    long long m = o / 2;
    if (o % 2 == 0 || m == L - 1) { idx[0] = m; wt[0] = (T)1; return 1; }
    idx[0] = m; wt[0] = (T)0.5; idx[1] = m + 1; wt[1] = (T)0.5; return 2;
}

template <typename T>
__device__ void bilinear2x_forward_impl(const T* __restrict__ x, T* __restrict__ y, long long NC,
                                        long long H, long long W) {
    const long long OH = 2 * H, OW = 2 * W, total = NC * OH * OW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ow = i % OW;
        long long oh = (i / OW) % OH;
        long long nc = i / (OW * OH);
        long long hi[2], wi[2];
        T hw[2], ww[2];
        int nh = bilinear_taps<T>(oh, H, hi, hw), nw = bilinear_taps<T>(ow, W, wi, ww);
        T sum = 0;
        for (int a = 0; a < nh; ++a)
            for (int b = 0; b < nw; ++b) sum += hw[a] * ww[b] * x[(nc * H + hi[a]) * W + wi[b]];
        y[i] = sum;
    }
}

// outputs along an axis (length L -> 2L) that read input m, with their weights
template <typename T>
__device__ __forceinline__ int bilinear_readers(long long m, long long L, long long* out, T* wt) {
    int n = 0;
    out[n] = 2 * m; wt[n++] = (T)1;
    out[n] = 2 * m + 1; wt[n++] = (m == L - 1) ? (T)1 : (T)0.5;
    if (m >= 1) { out[n] = 2 * m - 1; wt[n++] = (T)0.5; }
    return n;
}

template <typename T>
__device__ void bilinear2x_backward_impl(const T* __restrict__ gy, T* __restrict__ gx, long long NC,
                                         long long H, long long W) {
    const long long OW = 2 * W, total = NC * H * W;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long w = i % W;
        long long h = (i / W) % H;
        long long nc = i / (W * H);
        long long ho[3], wo[3];
        T hw[3], ww[3];
        int nh = bilinear_readers<T>(h, H, ho, hw), nw = bilinear_readers<T>(w, W, wo, ww);
        T sum = 0;
        for (int a = 0; a < nh; ++a)
            for (int b = 0; b < nw; ++b) sum += hw[a] * ww[b] * gy[(nc * 2 * H + ho[a]) * OW + wo[b]];
        gx[i] = sum;
    }
}

extern "C" __global__ void nearest_forward_f32(const float* x, float* y, long long NC, long long H, long long W, long long S) {
    nearest_forward_impl<float>(x, y, NC, H, W, S);
}
extern "C" __global__ void nearest_forward_f64(const double* x, double* y, long long NC, long long H, long long W, long long S) {
    nearest_forward_impl<double>(x, y, NC, H, W, S);
}
extern "C" __global__ void nearest_backward_f32(const float* gy, float* gx, long long NC, long long H, long long W, long long S) {
    nearest_backward_impl<float>(gy, gx, NC, H, W, S);
}
extern "C" __global__ void nearest_backward_f64(const double* gy, double* gx, long long NC, long long H, long long W, long long S) {
    nearest_backward_impl<double>(gy, gx, NC, H, W, S);
}
extern "C" __global__ void bilinear2x_forward_f32(const float* x, float* y, long long NC, long long H, long long W) {
    bilinear2x_forward_impl<float>(x, y, NC, H, W);
}
extern "C" __global__ void bilinear2x_forward_f64(const double* x, double* y, long long NC, long long H, long long W) {
    bilinear2x_forward_impl<double>(x, y, NC, H, W);
}
extern "C" __global__ void bilinear2x_backward_f32(const float* gy, float* gx, long long NC, long long H, long long W) {
    bilinear2x_backward_impl<float>(gy, gx, NC, H, W);
}
extern "C" __global__ void bilinear2x_backward_f64(const double* gy, double* gx, long long NC, long long H, long long W) {
    bilinear2x_backward_impl<double>(gy, gx, NC, H, W);
}
