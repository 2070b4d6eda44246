// A tiny CPU stand-in for the CUDA built-ins the minifrrn kernels use, so that the very same .cu
// source compiles with g++ and runs on the CPU (see executor.py, EmulatorExecutor).
// The kernels use neither shared memory nor __syncthreads nor atomics, and no thread reads what
// another writes, so running the threads of a launch one after another computes what the GPU's
// threads compute, value for value. Not bit for bit: nvcc fuses multiply-adds and has its own
// expf/logf, and the emulator's GEMM is NumPy's, so tests compare with a float tolerance.
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
