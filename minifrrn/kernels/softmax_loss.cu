// Fused softmax cross-entropy: one thread per pixel loops over the K classes of logits (N, K, HW).
// forward:  loss[n, j] = logsumexp(f[n, :, j]) - f[n, t, j]   (0 where t == ignore)
// backward: gf[n, k, j] = g * weight[n, j] * (softmax(f[n, :, j])[k] - [k == t])
// The maximum is subtracted before exponentiating, so logits of magnitude 1e4 are fine.

template <typename T> __device__ __forceinline__ T exp_t(T v);
template <> __device__ __forceinline__ float exp_t<float>(float v) { return expf(v); }
template <> __device__ __forceinline__ double exp_t<double>(double v) { return exp(v); }
template <typename T> __device__ __forceinline__ T log_t(T v);
template <> __device__ __forceinline__ float log_t<float>(float v) { return logf(v); }
template <> __device__ __forceinline__ double log_t<double>(double v) { return log(v); }

template <typename T>
__device__ void softmax_nll_forward_impl(const T* __restrict__ logits, const long long* __restrict__ target,
                                         T* __restrict__ loss, long long N, long long K, long long HW,
                                         long long ignore) {
    const long long total = N * HW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long j = i % HW, n = i / HW;
        const T* f = logits + n * K * HW + j;
        long long t = target[i];
        if (t == ignore) { loss[i] = (T)0; continue; }
        T m = f[0];
        for (long long k = 1; k < K; ++k) m = f[k * HW] > m ? f[k * HW] : m;
        T s = 0;
        for (long long k = 0; k < K; ++k) s += exp_t<T>(f[k * HW] - m);
        loss[i] = log_t<T>(s) + m - f[t * HW];
    }
}

template <typename T>
__device__ void softmax_nll_backward_impl(const T* __restrict__ logits,
                                          const long long* __restrict__ target,
                                          const T* __restrict__ weight, T* __restrict__ grad,
                                          long long N, long long K, long long HW, T upstream) {
    const long long total = N * HW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long j = i % HW, n = i / HW;
        const T* f = logits + n * K * HW + j;
        T* g = grad + n * K * HW + j;
        T w = weight[i] * upstream;
        if (w == (T)0) {
            for (long long k = 0; k < K; ++k) g[k * HW] = (T)0;
            continue;
        }
        T m = f[0];
        for (long long k = 1; k < K; ++k) m = f[k * HW] > m ? f[k * HW] : m;
        T s = 0;
        for (long long k = 0; k < K; ++k) s += exp_t<T>(f[k * HW] - m);
        long long t = target[i];
        for (long long k = 0; k < K; ++k)
            g[k * HW] = w * (exp_t<T>(f[k * HW] - m) / s - (k == t ? (T)1 : (T)0));
    }
}

extern "C" __global__ void softmax_nll_forward_f32(const float* logits, const long long* target, float* loss, long long N, long long K, long long HW, long long ignore) {
    softmax_nll_forward_impl<float>(logits, target, loss, N, K, HW, ignore);
}
extern "C" __global__ void softmax_nll_forward_f64(const double* logits, const long long* target, double* loss, long long N, long long K, long long HW, long long ignore) {
    softmax_nll_forward_impl<double>(logits, target, loss, N, K, HW, ignore);
}
extern "C" __global__ void softmax_nll_backward_f32(const float* logits, const long long* target, const float* weight, float* grad, long long N, long long K, long long HW, float upstream) {
    softmax_nll_backward_impl<float>(logits, target, weight, grad, N, K, HW, upstream);
}
extern "C" __global__ void softmax_nll_backward_f64(const double* logits, const long long* target, const double* weight, double* grad, long long N, long long K, long long HW, double upstream) {
    softmax_nll_backward_impl<double>(logits, target, weight, grad, N, K, HW, upstream);
}
