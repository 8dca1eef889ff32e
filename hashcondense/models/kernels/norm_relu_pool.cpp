#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

// ConvNet's block after each convolution in one pass: instance norm (affine) -> ReLU -> 2x2 average
// pool, per (n, c) plane of a contiguous NCHW float32 map (hashcondense/models/fused.py says why).
// Forward: two reductions over the plane (mean, then the centred variance) and one write of the
// pooled output; it keeps each plane's mean and 1/std for the backward. Backward (first order only):
// per plane in memory order, the norm's output and the ReLU mask recomputed from the input (never
// stored); the affine gradients are the planes' sums added per channel in a fixed order, so nothing
// depends on the thread count.
std::vector<torch::Tensor> nrp_forward(torch::Tensor x, torch::Tensor gamma, torch::Tensor beta, double eps) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat && x.is_contiguous());
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), M = H * W;
  const int64_t Ho = H / 2, Wo = W / 2;
  auto out = torch::empty({N, C, Ho, Wo}, x.options());
  auto stats = torch::empty({2, N * C}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* gp = gamma.data_ptr<float>();
  const float* bp = beta.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* mp = stats.data_ptr<float>();
  float* rp = mp + N * C;
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, N * C, 16, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* xs = xp + p * M;
      const int64_t c = p % C;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < M; ++i) s += xs[i];
      const float mean = s / M;
      float v = 0.f;
#pragma omp simd reduction(+ : v)
      for (int64_t i = 0; i < M; ++i) { const float d = xs[i] - mean; v += d * d; }
      const float rstd = 1.f / std::sqrt(v / M + feps);
      const float a = rstd * gp[c], b = bp[c] - mean * a;
      float* os = op + p * Ho * Wo;
      for (int64_t ho = 0; ho < Ho; ++ho) {
        const float* r0 = xs + 2 * ho * W;
        const float* r1 = r0 + W;
        float* orow = os + ho * Wo;
#pragma omp simd
        for (int64_t wo = 0; wo < Wo; ++wo) {
          const float z0 = std::max(r0[2 * wo] * a + b, 0.f), z1 = std::max(r0[2 * wo + 1] * a + b, 0.f);
          const float z2 = std::max(r1[2 * wo] * a + b, 0.f), z3 = std::max(r1[2 * wo + 1] * a + b, 0.f);
          orow[wo] = 0.25f * ((z0 + z1) + (z2 + z3));
        }
      }
      mp[p] = mean;
      rp[p] = rstd;
    }
  });
  return {out, stats};
}

std::vector<torch::Tensor> nrp_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor stats,
                                        torch::Tensor gamma, torch::Tensor beta) {
  grad_out = grad_out.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), M = H * W;
  const int64_t Ho = H / 2, Wo = W / 2;
  auto grad_x = torch::empty_like(x);
  auto grad_gamma = torch::empty({C}, x.options());
  auto grad_beta = torch::empty({C}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* gop = grad_out.data_ptr<float>();
  const float* mp = stats.data_ptr<float>();
  const float* rp = mp + N * C;
  const float* gp = gamma.data_ptr<float>();
  const float* bp = beta.data_ptr<float>();
  float* gxp = grad_x.data_ptr<float>();
  float* ggp = grad_gamma.data_ptr<float>();
  float* gbp = grad_beta.data_ptr<float>();
  // per plane, in memory order (streaming; a plane is one 4 KB page at 32 x 32): its gradient and its
  // two sums, kept per plane and added per channel afterwards in a fixed order (thread-count free)
  auto sums = torch::empty({2, N * C}, x.options().dtype(torch::kDouble));
  double* sgp = sums.data_ptr<double>();
  double* sxp = sgp + N * C;
  at::parallel_for(0, N * C, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> gz(M);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C;
      const float* xs = xp + p * M;
      const float* go = gop + p * Ho * Wo;
      const float mean = mp[p], rstd = rp[p], g = gp[c];
      const float a = rstd * g, bb = bp[c] - mean * a;
      // gradient at the norm's output z: the pooled gradient / 4 where z > 0, else 0
      for (int64_t h = 0; h < 2 * Ho; ++h) {
        float* gzr = gz.data() + h * W;
        const float* xr = xs + h * W;
        const float* gor = go + (h / 2) * Wo;
#pragma omp simd
        for (int64_t wo = 0; wo < Wo; ++wo) {
          const float q = 0.25f * gor[wo];
          gzr[2 * wo] = xr[2 * wo] * a + bb > 0.f ? q : 0.f;
          gzr[2 * wo + 1] = xr[2 * wo + 1] * a + bb > 0.f ? q : 0.f;
        }
        for (int64_t w = 2 * Wo; w < W; ++w) gzr[w] = 0.f;
      }
      for (int64_t i = 2 * Ho * W; i < M; ++i) gz[i] = 0.f;
      float sg = 0.f, sgx = 0.f;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t i = 0; i < M; ++i) {
        sg += gz[i];
        sgx += gz[i] * ((xs[i] - mean) * rstd);
      }
      sgp[p] = sg;
      sxp[p] = sgx;
      const float k1 = g * sg / M, k2 = g * sgx / M;
      float* gx = gxp + p * M;
#pragma omp simd
      for (int64_t i = 0; i < M; ++i) gx[i] = rstd * (g * gz[i] - k1 - (xs[i] - mean) * rstd * k2);
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double sum_g = 0.0, sum_gx = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      sum_g += sgp[n * C + c];
      sum_gx += sxp[n * C + c];
    }
    ggp[c] = static_cast<float>(sum_gx);
    gbp[c] = static_cast<float>(sum_g);
  }
  return {grad_x, grad_gamma, grad_beta};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &nrp_forward);
  m.def("backward", &nrp_backward);
}
