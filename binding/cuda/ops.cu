// The CUDA op families except the matmul (matmul.cu), in one translation unit to keep nvcc time down: each family
// lives in its own header (kernels + launchers), llm.c style. Declarations: cuda_ops.h.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "embedding.cuh"
#include "layernorm.cuh"
#include "attention.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"
#include "gelu.cuh"
#include "geglu.cuh"
#include "residual.cuh"
#include "crossentropy.cuh"
#include "adamw.cuh"
#include "gradmatch.cuh"
#include "project.cuh"
