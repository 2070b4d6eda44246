// Batch normalisation over (N, H, W), one thread per element, with per-channel statistics summed
// beforehand (channel_sums in reduce.cu for the forward, bn_backward_sums below for the backward).
//
// forward:  y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]              (relu = 1: max(y, 0))
// backward: g = gy, or with the fused ReLU g = gy where y > 0 and 0 elsewhere
//   bn_backward_sums: partial sums, per channel, of g and of g * (x - mean[c])
//                     (layout and launch as channel_sums: blockIdx.y is the channel)
//   bn_backward, xhat = (x - mean[c]) * invstd[c]:
//     training: gx = gamma[c] * invstd[c] / M * (M * g - sum_g[c] - xhat * sum_g_xhat[c])
//     eval:     gx = g * gamma[c] * invstd[c]
// The ReLU mask is read from the forward's y inside both kernels: no masked copy of gy is made.
//
// bn_statistics, one thread per channel, after channel_sums gave sum_sq[c] = sum of (x - mean[c])^2:
//   var[c] = sum_sq[c] / M,  invstd[c] = 1 / sqrt(var[c] + eps)
//   update = 1: running_mean[c] = (1 - m) * running_mean[c] + m * mean[c]
//               running_var[c]  = (1 - m) * running_var[c]  + m * var[c] * M / max(M - 1, 1)
// One launch instead of about a dozen array operations on C numbers, each a launch of its own.

template <typename T>
__device__ void bn_forward_impl(const T* __restrict__ x, const T* __restrict__ mean,
                                const T* __restrict__ invstd, const T* __restrict__ gamma,
                                const T* __restrict__ beta, T* __restrict__ y, long long N,
                                long long C, long long HW, long long relu) {
    const long long total = N * C * HW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long c = (i / HW) % C;
        T v = (x[i] - mean[c]) * invstd[c] * gamma[c] + beta[c];
        y[i] = (relu && v < (T)0) ? (T)0 : v;
    }
}

template <typename T>
__device__ void bn_backward_sums_impl(const T* __restrict__ x, const T* __restrict__ gy,
                                      const T* __restrict__ y, const T* __restrict__ mean,
                                      T* __restrict__ partial_g, T* __restrict__ partial_g_centred,
                                      long long N, long long C, long long HW, long long relu) {
    const long long threads = (long long)blockDim.x * gridDim.x;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long c = blockIdx.y; c < C; c += gridDim.y) {
        const T m = mean[c];
        T sum_g = 0, sum_g_centred = 0;
        for (long long n = 0; n < N; ++n) {
            const long long base = (n * C + c) * HW;
            for (long long j = t; j < HW; j += threads) {
                const T g = (relu && !(y[base + j] > (T)0)) ? (T)0 : gy[base + j];
                sum_g += g;
                sum_g_centred += g * (x[base + j] - m);
            }
        }
        partial_g[c * threads + t] = sum_g;
        partial_g_centred[c * threads + t] = sum_g_centred;
    }
}

template <typename T>
__device__ void bn_backward_impl(const T* __restrict__ x, const T* __restrict__ gy,
                                 const T* __restrict__ y, const T* __restrict__ mean,
                                 const T* __restrict__ invstd, const T* __restrict__ gamma,
                                 const T* __restrict__ sum_g, const T* __restrict__ sum_g_xhat,
                                 T* __restrict__ gx, long long N, long long C, long long HW,
                                 long long training, long long relu) {
    const long long total = N * C * HW;
    const T M = (T)(N * HW);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long c = (i / HW) % C;
        T scale = gamma[c] * invstd[c];
        const T g = (relu && !(y[i] > (T)0)) ? (T)0 : gy[i];
        if (training) {
            T xhat = (x[i] - mean[c]) * invstd[c];
            gx[i] = scale / M * (M * g - sum_g[c] - xhat * sum_g_xhat[c]);
        } else {
            gx[i] = g * scale;
        }
    }
}

template <typename T>
__device__ void bn_statistics_impl(const T* __restrict__ sum_sq, const T* __restrict__ mean,
                                   T* __restrict__ var, T* __restrict__ invstd,
                                   T* __restrict__ running_mean, T* __restrict__ running_var,
                                   long long C, long long M, T eps, T momentum, long long update) {
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < C;
         c += (long long)blockDim.x * gridDim.x) {
        const T v = sum_sq[c] / (T)M;
        var[c] = v;
        invstd[c] = (T)1 / sqrt(v + eps);
        if (update) {
            const T unbiased = (T)M / (T)(M > 1 ? M - 1 : 1);
            running_mean[c] = ((T)1 - momentum) * running_mean[c] + momentum * mean[c];
            running_var[c] = ((T)1 - momentum) * running_var[c] + momentum * v * unbiased;
        }
    }
}

extern "C" __global__ void bn_statistics_f32(const float* sum_sq, const float* mean, float* var, float* invstd, float* running_mean, float* running_var, long long C, long long M, float eps, float momentum, long long update) {
    bn_statistics_impl<float>(sum_sq, mean, var, invstd, running_mean, running_var, C, M, eps, momentum, update);
}
extern "C" __global__ void bn_statistics_f64(const double* sum_sq, const double* mean, double* var, double* invstd, double* running_mean, double* running_var, long long C, long long M, double eps, double momentum, long long update) {
    bn_statistics_impl<double>(sum_sq, mean, var, invstd, running_mean, running_var, C, M, eps, momentum, update);
}
extern "C" __global__ void bn_forward_f32(const float* x, const float* mean, const float* invstd, const float* gamma, const float* beta, float* y, long long N, long long C, long long HW, long long relu) {
    bn_forward_impl<float>(x, mean, invstd, gamma, beta, y, N, C, HW, relu);
}
extern "C" __global__ void bn_forward_f64(const double* x, const double* mean, const double* invstd, const double* gamma, const double* beta, double* y, long long N, long long C, long long HW, long long relu) {
    bn_forward_impl<double>(x, mean, invstd, gamma, beta, y, N, C, HW, relu);
}
extern "C" __global__ void bn_backward_sums_f32(const float* x, const float* gy, const float* y, const float* mean, float* partial_g, float* partial_g_centred, long long N, long long C, long long HW, long long relu) {
    bn_backward_sums_impl<float>(x, gy, y, mean, partial_g, partial_g_centred, N, C, HW, relu);
}
extern "C" __global__ void bn_backward_sums_f64(const double* x, const double* gy, const double* y, const double* mean, double* partial_g, double* partial_g_centred, long long N, long long C, long long HW, long long relu) {
    bn_backward_sums_impl<double>(x, gy, y, mean, partial_g, partial_g_centred, N, C, HW, relu);
}
extern "C" __global__ void bn_backward_f32(const float* x, const float* gy, const float* y, const float* mean, const float* invstd, const float* gamma, const float* sum_g, const float* sum_g_xhat, float* gx, long long N, long long C, long long HW, long long training, long long relu) {
    bn_backward_impl<float>(x, gy, y, mean, invstd, gamma, sum_g, sum_g_xhat, gx, N, C, HW, training, relu);
}
extern "C" __global__ void bn_backward_f64(const double* x, const double* gy, const double* y, const double* mean, const double* invstd, const double* gamma, const double* sum_g, const double* sum_g_xhat, double* gx, long long N, long long C, long long HW, long long training, long long relu) {
    bn_backward_impl<double>(x, gy, y, mean, invstd, gamma, sum_g, sum_g_xhat, gx, N, C, HW, training, relu);
}
