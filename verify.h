// verify.h: `seal verify`: reproduce a PyTorch fixture (FORMATS.md) and
// compare every number it pins.
#pragma once
#include <stdio.h>

// fp32 CPU tolerance per tensor: |ours - ref| <= VERIFY_ATOL + VERIFY_RTOL * max|ref|.
#define VERIFY_ATOL 1e-5
#define VERIFY_RTOL 1e-3

// The bf16 CUDA backend's tolerance, stated in its output: the same form,
// with 8 bf16 ulps (2^-7 each) of the largest reference value in place of
// fp32's; the emulated GPU (make test-cuda-emu) reaches at most 4.4 on the
// fixtures. A trained tensor (after.*) may also be off by up to 2 * lr per
// AdamW step: Adam steps by about lr whatever the size of the gradient, so an
// element whose gradient is within bf16 noise of zero may step the other way.
#define VERIFY_BF16_ATOL 2e-3
#define VERIFY_BF16_RTOL 6.25e-2

// Runs the fixture in dir, printing one line per compared tensor to out.
// Returns 0 when every tensor is inside tolerance, 1 when one is not, and -1
// (with err) when the fixture is missing, malformed or inconsistent.
int verify_fixture(const char *dir, FILE *out, char *err);
// The same on the CUDA backend (cuda = 1: kernels.cu; the model in bf16, LoRA
// fixtures trained on the GPU, full-model fixtures checked up to the loss).
int verify_fixture_on(const char *dir, int cuda, FILE *out, char *err);
