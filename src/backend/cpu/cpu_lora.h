#pragma once
// The CPU backend's view of a LoraMatrix: the layout its LoRA kernels (kernels/cpu/lora.h) read.
// LoraMatrix keeps its values in those layouts (backend/lora_matrix.cpp), which a device backend
// would upload from.

#include "backend/backend.h"
#include "kernels/cpu/lora.h"

namespace tern::backend {

/// The matrix as the CPU LoRA kernels (and their reference) read it.
kernels::LoraWeights cpu_lora_weights(const LoraMatrix& m);

}  // namespace tern::backend
