// CUDA kernels of the nasflow-ops custom ops (f32, NCHW, contiguous), built to PTX by
// ops/build.rs when the `cuda` feature is on and launched from ops/src/kernels/cuda.rs.
//
// They follow the CPU kernels (ops/src/kernels/*.rs) rule for rule:
// * ReLU is `v > 0 ? v : 0` (NaN -> 0) on inputs, and grads pass where the *output* is > 0;
// * max pool: pad = -inf, a cell wins when `v > best || isnan(v)` in row-major tap order, the
//   gradient goes to that first maximum (the first in-bounds cell if none wins), like PyTorch;
// * avg pool divisors as `reference::avg_divisor` (count_include_pad either way);
// * sums over kernel taps (and gather-style backward sums) run in the order of the CPU scatter,
//   with explicitly rounded mul/add (no FMA contraction), so in the common case the values match
//   the CPU kernels; only the reductions (depthwise grad weight, BN statistics) sum in another
//   (fixed) order, in double.
//
// No float atomics anywhere: every backward kernel is a gather (one thread per input element)
// and every reduction is one block per output value with a fixed-shape tree, so results do not
// change from run to run. Reduction kernels must be launched with exactly NF_RED_THREADS threads
// per block.

#define NF_RED_THREADS 256

// Geometry of a window op (depthwise conv, pools); must match `WinGeo` in cuda.rs.
struct WinGeo {
    int b, c, h, w;   // input
    int k, s, p, d;   // square kernel, stride, padding, dilation
    int ho, wo;       // output
    int flag;         // depthwise: ReLU fused into the input read; avg pool: count_include_pad
};

// x[:, :, h0::sh, w0::sw]; must match `SubGeo` in cuda.rs.
struct SubGeo {
    int b, c, h, w;
    int sh, sw, h0, w0;
    int ho, wo;
    int relu;
};

__device__ __forceinline__ float nf_relu(float v) { return v > 0.0f ? v : 0.0f; }

__device__ __forceinline__ float nf_neg_inf() { return __int_as_float(0xff800000); }

// Decomposes a flat NCHW index over (planes, rows, cols): returns the plane (b * C + c).
__device__ __forceinline__ long long nf_split(long long idx, int rows, int cols, int* r, int* q) {
    *q = (int)(idx % cols);
    long long t = idx / cols;
    *r = (int)(t % rows);
    return t / rows;
}

// ------------------------------------------------------------------------------ depthwise conv

// y[b, c, oh, ow] = sum_{kh, kw} w[c, kh, kw] * relu?(x[b, c, oh*s - p + kh*d, ow*s - p + kw*d])
extern "C" __global__ void nf_dw_fwd(const float* __restrict__ x, const float* __restrict__ wt, float* __restrict__ y, WinGeo g) {
    long long n = (long long)g.b * g.c * g.ho * g.wo;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int oh, ow;
        long long plane = nf_split(idx, g.ho, g.wo, &oh, &ow);
        int c = (int)(plane % g.c);
        const float* xp = x + plane * g.h * g.w;
        const float* wp = wt + (long long)c * g.k * g.k;
        float acc = 0.0f;
        for (int kh = 0; kh < g.k; ++kh) {
            int ih = oh * g.s - g.p + kh * g.d;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.k; ++kw) {
                int iw = ow * g.s - g.p + kw * g.d;
                if (iw < 0 || iw >= g.w) continue;
                float v = xp[ih * g.w + iw];
                if (g.flag) v = nf_relu(v);
                acc = __fadd_rn(acc, __fmul_rn(wp[kh * g.k + kw], v));
            }
        }
        y[idx] = acc;
    }
}

// grad x[b, c, ih, iw] = sum over the taps (kh, kw) that read it of w[c, kh, kw] * g[b, c, oh, ow];
// with the fused ReLU, zero where x <= 0 (or NaN).
extern "C" __global__ void nf_dw_bwd_input(const float* __restrict__ x, const float* __restrict__ gr, const float* __restrict__ wt, float* __restrict__ gx, WinGeo g) {
    long long n = (long long)g.b * g.c * g.h * g.w;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int ih, iw;
        long long plane = nf_split(idx, g.h, g.w, &ih, &iw);
        if (g.flag && !(x[idx] > 0.0f)) {
            gx[idx] = 0.0f;
            continue;
        }
        int c = (int)(plane % g.c);
        const float* gp = gr + plane * g.ho * g.wo;
        const float* wp = wt + (long long)c * g.k * g.k;
        float acc = 0.0f;
        for (int kh = 0; kh < g.k; ++kh) {
            int th = ih + g.p - kh * g.d;
            if (th < 0 || th % g.s != 0) continue;
            int oh = th / g.s;
            if (oh >= g.ho) continue;
            for (int kw = 0; kw < g.k; ++kw) {
                int tw = iw + g.p - kw * g.d;
                if (tw < 0 || tw % g.s != 0) continue;
                int ow = tw / g.s;
                if (ow >= g.wo) continue;
                acc = __fadd_rn(acc, __fmul_rn(wp[kh * g.k + kw], gp[oh * g.wo + ow]));
            }
        }
        gx[idx] = acc;
    }
}

// Block tree reduction of one double per thread (blockDim.x == NF_RED_THREADS); the total is
// returned to every thread. Fixed order: deterministic for a fixed launch shape.
__device__ double nf_block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int o = NF_RED_THREADS / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    double t = sh[0];
    __syncthreads();
    return t;
}

// grad w[c, kh, kw] = sum_{b, oh, ow} g[b, c, oh, ow] * relu?(x[b, c, ih, iw]); one block per
// (c, kh, kw), grid = C * k * k, NF_RED_THREADS threads, summed in double.
extern "C" __global__ void nf_dw_bwd_weight(const float* __restrict__ x, const float* __restrict__ gr, float* __restrict__ gw, WinGeo g) {
    __shared__ double sh[NF_RED_THREADS];
    int kk = g.k * g.k;
    int c = blockIdx.x / kk;
    int tap = blockIdx.x % kk;
    int kh = tap / g.k, kw = tap % g.k;
    int plane_out = g.ho * g.wo;
    long long m = (long long)g.b * plane_out;
    double acc = 0.0;
    for (long long i = threadIdx.x; i < m; i += NF_RED_THREADS) {
        int bi = (int)(i / plane_out);
        int j = (int)(i % plane_out);
        int oh = j / g.wo, ow = j % g.wo;
        int ih = oh * g.s - g.p + kh * g.d;
        int iw = ow * g.s - g.p + kw * g.d;
        if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
        long long plane = (long long)bi * g.c + c;
        float v = x[plane * g.h * g.w + ih * g.w + iw];
        if (g.flag) v = nf_relu(v);
        acc += (double)gr[plane * plane_out + j] * (double)v;
    }
    double t = nf_block_sum(acc, sh);
    if (threadIdx.x == 0) gw[blockIdx.x] = (float)t;
}

// ------------------------------------------------------------------------------ max pool

extern "C" __global__ void nf_max_fwd(const float* __restrict__ x, float* __restrict__ y, WinGeo g) {
    long long n = (long long)g.b * g.c * g.ho * g.wo;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int oh, ow;
        long long plane = nf_split(idx, g.ho, g.wo, &oh, &ow);
        const float* xp = x + plane * g.h * g.w;
        float best = nf_neg_inf();
        for (int kh = 0; kh < g.k; ++kh) {
            int ih = oh * g.s - g.p + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.k; ++kw) {
                int iw = ow * g.s - g.p + kw;
                if (iw < 0 || iw >= g.w) continue;
                float v = xp[ih * g.w + iw];
                if (v > best || isnan(v)) best = v;
            }
        }
        y[idx] = best;
    }
}

// Position (ih * W + iw) in the plane that receives the gradient of output (oh, ow): the winner
// of the forward rule, or the first in-bounds cell when no cell beats -inf; -1 if none.
__device__ int nf_max_winner(const float* xp, const WinGeo& g, int oh, int ow) {
    float best = nf_neg_inf();
    int win = -1, first = -1;
    for (int kh = 0; kh < g.k; ++kh) {
        int ih = oh * g.s - g.p + kh;
        if (ih < 0 || ih >= g.h) continue;
        for (int kw = 0; kw < g.k; ++kw) {
            int iw = ow * g.s - g.p + kw;
            if (iw < 0 || iw >= g.w) continue;
            int pos = ih * g.w + iw;
            if (first < 0) first = pos;
            float v = xp[pos];
            if (v > best || isnan(v)) {
                best = v;
                win = pos;
            }
        }
    }
    return win >= 0 ? win : first;
}

// Gather: each input cell sums the grads of the outputs whose window it wins, in row-major
// output order (the CPU kernel's scatter order). Recomputes the winners (k*k reads per window).
extern "C" __global__ void nf_max_bwd(const float* __restrict__ x, const float* __restrict__ gr, float* __restrict__ gx, WinGeo g) {
    long long n = (long long)g.b * g.c * g.h * g.w;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int ih, iw;
        long long plane = nf_split(idx, g.h, g.w, &ih, &iw);
        const float* xp = x + plane * g.h * g.w;
        const float* gp = gr + plane * g.ho * g.wo;
        int me = ih * g.w + iw;
        // outputs whose window [o*s - p, o*s - p + k) contains the cell
        int oh0 = ih + g.p - g.k + 1;
        oh0 = oh0 <= 0 ? 0 : (oh0 + g.s - 1) / g.s;
        int oh1 = min((ih + g.p) / g.s, g.ho - 1);
        int ow0 = iw + g.p - g.k + 1;
        ow0 = ow0 <= 0 ? 0 : (ow0 + g.s - 1) / g.s;
        int ow1 = min((iw + g.p) / g.s, g.wo - 1);
        float acc = 0.0f;
        for (int oh = oh0; oh <= oh1; ++oh) {
            for (int ow = ow0; ow <= ow1; ++ow) {
                if (nf_max_winner(xp, g, oh, ow) == me) acc = __fadd_rn(acc, gp[oh * g.wo + ow]);
            }
        }
        gx[idx] = acc;
    }
}

// ------------------------------------------------------------------------------ avg pool

// 1 / divisor of output (oh, ow), as `reference::avg_divisor` (flag = count_include_pad).
__device__ __forceinline__ float nf_avg_inv(const WinGeo& g, int oh, int ow) {
    int h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
    int h1, w1;
    if (g.flag) {
        h1 = min(h0 + g.k, g.h + g.p);
        w1 = min(w0 + g.k, g.w + g.p);
    } else {
        h1 = min(h0 + g.k, g.h);
        w1 = min(w0 + g.k, g.w);
        h0 = max(h0, 0);
        w0 = max(w0, 0);
    }
    return __fdiv_rn(1.0f, (float)((h1 - h0) * (w1 - w0)));
}

extern "C" __global__ void nf_avg_fwd(const float* __restrict__ x, float* __restrict__ y, WinGeo g) {
    long long n = (long long)g.b * g.c * g.ho * g.wo;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int oh, ow;
        long long plane = nf_split(idx, g.ho, g.wo, &oh, &ow);
        const float* xp = x + plane * g.h * g.w;
        float acc = 0.0f;
        for (int kh = 0; kh < g.k; ++kh) {
            int ih = oh * g.s - g.p + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.k; ++kw) {
                int iw = ow * g.s - g.p + kw;
                if (iw < 0 || iw >= g.w) continue;
                acc = __fadd_rn(acc, xp[ih * g.w + iw]);
            }
        }
        y[idx] = __fmul_rn(acc, nf_avg_inv(g, oh, ow));
    }
}

// Gather, taps in row-major order (the CPU scatter order): grad x = sum g[oh, ow] / div[oh, ow].
extern "C" __global__ void nf_avg_bwd(const float* __restrict__ gr, float* __restrict__ gx, WinGeo g) {
    long long n = (long long)g.b * g.c * g.h * g.w;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int ih, iw;
        long long plane = nf_split(idx, g.h, g.w, &ih, &iw);
        const float* gp = gr + plane * g.ho * g.wo;
        float acc = 0.0f;
        for (int kh = 0; kh < g.k; ++kh) {
            int th = ih + g.p - kh;
            if (th < 0 || th % g.s != 0) continue;
            int oh = th / g.s;
            if (oh >= g.ho) continue;
            for (int kw = 0; kw < g.k; ++kw) {
                int tw = iw + g.p - kw;
                if (tw < 0 || tw % g.s != 0) continue;
                int ow = tw / g.s;
                if (ow >= g.wo) continue;
                acc = __fadd_rn(acc, __fmul_rn(gp[oh * g.wo + ow], nf_avg_inv(g, oh, ow)));
            }
        }
        gx[idx] = acc;
    }
}

// ------------------------------------------------------------------------------ subsample

extern "C" __global__ void nf_sub_fwd(const float* __restrict__ x, float* __restrict__ y, SubGeo g) {
    long long n = (long long)g.b * g.c * g.ho * g.wo;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int oh, ow;
        long long plane = nf_split(idx, g.ho, g.wo, &oh, &ow);
        float v = x[plane * g.h * g.w + (long long)(g.h0 + oh * g.sh) * g.w + g.w0 + ow * g.sw];
        y[idx] = g.relu ? nf_relu(v) : v;
    }
}

// grad x: g at the sampled cells (masked by y > 0 with the ReLU), zero elsewhere.
extern "C" __global__ void nf_sub_bwd(const float* __restrict__ gr, const float* __restrict__ y, float* __restrict__ gx, SubGeo g) {
    long long n = (long long)g.b * g.c * g.h * g.w;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)blockDim.x * gridDim.x) {
        int ih, iw;
        long long plane = nf_split(idx, g.h, g.w, &ih, &iw);
        int th = ih - g.h0, tw = iw - g.w0;
        float v = 0.0f;
        if (th >= 0 && tw >= 0 && th % g.sh == 0 && tw % g.sw == 0) {
            long long j = plane * g.ho * g.wo + (long long)(th / g.sh) * g.wo + tw / g.sw;
            v = (g.relu && !(y[j] > 0.0f)) ? 0.0f : gr[j];
        }
        gx[idx] = v;
    }
}

// ------------------------------------------------------------------------------ relu

extern "C" __global__ void nf_relu_fwd(const float* __restrict__ x, float* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        y[i] = nf_relu(x[i]);
    }
}

// PyTorch's threshold_backward: the grad where the output is > 0.
extern "C" __global__ void nf_relu_bwd(const float* __restrict__ y, const float* __restrict__ gr, float* __restrict__ gx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        gx[i] = y[i] > 0.0f ? gr[i] : 0.0f;
    }
}

// ------------------------------------------------------------------------------ batch norm

// Per-channel mean and biased variance, one block per channel (grid = C, NF_RED_THREADS
// threads): out[c] = mean, out[C + c] = var. Two passes like the CPU kernel: the mean (double
// sum, rounded to f32), then sum((x - mean)^2) in double.
extern "C" __global__ void nf_bn_stats(const float* __restrict__ x, float* __restrict__ out, int b, int c, long long hw) {
    __shared__ double sh[NF_RED_THREADS];
    int ch = blockIdx.x;
    long long m = (long long)b * hw;
    double s = 0.0;
    for (long long i = threadIdx.x; i < m; i += NF_RED_THREADS) {
        long long bi = i / hw, j = i % hw;
        s += (double)x[(bi * c + ch) * hw + j];
    }
    double n = (double)m;
    float mean = (float)(nf_block_sum(s, sh) / n);
    double q = 0.0;
    for (long long i = threadIdx.x; i < m; i += NF_RED_THREADS) {
        long long bi = i / hw, j = i % hw;
        float d = __fsub_rn(x[(bi * c + ch) * hw + j], mean);
        q += (double)__fmul_rn(d, d);
    }
    double t = nf_block_sum(q, sh);
    if (threadIdx.x == 0) {
        out[ch] = mean;
        out[c + ch] = (float)(t / n);
    }
}

// y = x * scale + shift, scale = w * invstd, shift = bias - mean * scale (per channel).
extern "C" __global__ void nf_bn_fwd(const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ bias, const float* __restrict__ mean, const float* __restrict__ invstd, float* __restrict__ y, int c, long long hw, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        int ch = (int)((i / hw) % c);
        float scale = __fmul_rn(wt[ch], invstd[ch]);
        float shift = __fsub_rn(bias[ch], __fmul_rn(mean[ch], scale));
        y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
    }
}

// Backward sums and coefficients, one block per channel (grid = C, NF_RED_THREADS threads):
// sg = sum g, sgx = sum g * (x - mean) in double, then (rows of `out`, each C long)
//   0: a = w * invstd, 1: k = a * invstd^2 * sgx / N, 2: c0 = k * mean - a * sg / N
//   (k = c0 = 0 without batch statistics), 3: grad w = sgx * invstd, 4: grad bias = sg,
// so that grad x = a * g - k * x + c0 (`nf_bn_dx`).
extern "C" __global__ void nf_bn_bwd_reduce(const float* __restrict__ gr, const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ mean, const float* __restrict__ invstd, float* __restrict__ out, int b, int c, long long hw, int batch_stats) {
    __shared__ double sh[NF_RED_THREADS];
    int ch = blockIdx.x;
    long long m = (long long)b * hw;
    float mu = mean[ch];
    double sg = 0.0, sgx = 0.0;
    for (long long i = threadIdx.x; i < m; i += NF_RED_THREADS) {
        long long bi = i / hw, j = i % hw;
        long long e = (bi * c + ch) * hw + j;
        float gv = gr[e];
        sg += (double)gv;
        sgx += (double)__fmul_rn(gv, __fsub_rn(x[e], mu));
    }
    sg = nf_block_sum(sg, sh);
    sgx = nf_block_sum(sgx, sh);
    if (threadIdx.x == 0) {
        double n = (double)m;
        double inv = (double)invstd[ch];
        double a = (double)wt[ch] * inv;
        double k = 0.0, c0 = 0.0;
        if (batch_stats) {
            k = a * inv * inv * sgx / n;
            c0 = k * (double)mu - a * sg / n;
        }
        out[ch] = (float)a;
        out[c + ch] = (float)k;
        out[2 * c + ch] = (float)c0;
        out[3 * c + ch] = (float)(sgx * inv);
        out[4 * c + ch] = (float)sg;
    }
}

// grad x = a * g - k * x + c0 with the per-channel rows 0..3 of `nf_bn_bwd_reduce`'s output.
extern "C" __global__ void nf_bn_dx(const float* __restrict__ gr, const float* __restrict__ x, const float* __restrict__ coef, float* __restrict__ gx, int c, long long hw, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        int ch = (int)((i / hw) % c);
        float a = coef[ch], k = coef[c + ch], c0 = coef[2 * c + ch];
        gx[i] = __fadd_rn(__fsub_rn(__fmul_rn(a, gr[i]), __fmul_rn(k, x[i])), c0);
    }
}
