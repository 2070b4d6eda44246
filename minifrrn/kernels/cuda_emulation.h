// A tiny CPU stand-in for the CUDA built-ins the minifrrn kernels use, so that the very same .cu
// source compiles with g++ and runs on the CPU (see executor.py, EmulatorExecutor).
// The kernels use neither shared memory nor __syncthreads, so running the threads of a launch one
// after another gives exactly what the GPU computes.
#pragma once
#include <cmath>
#include <math.h>

struct dim3 {
    unsigned int x, y, z;
};

// set by the generated launchers before each simulated thread runs
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
