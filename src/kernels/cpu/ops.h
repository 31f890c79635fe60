#pragma once
// Element-wise and row-wise operations of the forward pass, on row-major float matrices.
// These are cheap next to the matrix products; plain loops the compiler vectorizes are enough.

#include <cstdint>

namespace tern::kernels {

/// out = x / rms(x) * weight, per row of n (in place allowed). `weight` may be null (no scaling).
void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps);

/// Rotary position embedding on one head vector of `head_dim` at position `pos`.
/// NORM pairs (x[2i], x[2i+1]) (llama); NEOX pairs (x[i], x[i + head_dim/2]) (qwen2, gemma3).
enum class RopeStyle { NORM, NEOX };
void rope(float* x, int64_t head_dim, int64_t rotary_dims, int64_t pos, float freq_base, RopeStyle style);

/// In-place softmax over n values.
void softmax(float* x, int64_t n);

/// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
/// out[i] = gelu(gate[i]) * up[i], GELU with the tanh approximation (as Gemma uses), tabulated over
/// half-precision inputs exactly as llama.cpp does.
void gelu_mul(const float* gate, const float* up, float* out, int64_t n);

}  // namespace tern::kernels
