#pragma once
// The one tolerance table of SPEC §0.1. Compare a fast result y with a reference r (float64, from the same
// inputs) by relative RMS ‖y − r‖₂/‖r‖₂ and by max|y − r| / max|r|. Per-element relative error is not used.
namespace hydra::test {

struct Tolerance {
  double rel_rms;
  double max_abs_rel;  // max |y − r| / max |r|
};

// float64 kernel vs float64 reference: only summation order differs.
inline constexpr Tolerance kTolF64{1e-10, 1e-9};
// float32 kernel (CPU or CUDA, no TF32) vs float64 reference.
inline constexpr Tolerance kTolF32{1e-5, 1e-4};
// float32 with TF32 GEMMs (10-bit mantissa inputs).
inline constexpr Tolerance kTolTF32{5e-4, 5e-3};
// bf16 inputs, fp32 accumulation vs float64 reference on the same (upcast) bf16 inputs.
inline constexpr Tolerance kTolBF16{1e-2, 5e-2};
// Beyond SPEC §0.1 (which is per kernel): the parameter gradients of a whole model run under the bf16 mixed-precision
// policy vs the same model in float32. Every gradient has passed through the bf16 activations of all the layers
// above it, forward and backward, and reductions over all B·T positions (biases, the gate projection) cancel, so
// their relative RMS error reaches 1–2% where one kernel stays below 1% (measured on the H100: up to 0.02). The
// logits of that comparison use kTolBF16.
inline constexpr Tolerance kTolModelBF16Grad{3e-2, 5e-2};
// Whole-model logits, float32, vs the golden files: absolute max |Δ|.
inline constexpr double kGoldenLogitsMaxAbs = 1e-4;
// gradcheck: |analytic − numeric| ≤ atol + rtol·|numeric|, float64 central differences with eps.
inline constexpr double kGradcheckEps = 1e-6;
inline constexpr double kGradcheckAtol = 1e-5;
inline constexpr double kGradcheckRtol = 1e-3;

}  // namespace hydra::test
