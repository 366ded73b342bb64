// verify.h: `seal verify`: reproduce a PyTorch fixture (FORMATS.md) and
// compare every number it pins.
#pragma once
#include <stdio.h>

// fp32 CPU tolerance per tensor: |ours - ref| <= VERIFY_ATOL + VERIFY_RTOL * max|ref|.
#define VERIFY_ATOL 1e-5
#define VERIFY_RTOL 1e-3

// Runs the fixture in dir, printing one line per compared tensor to out.
// Returns 0 when every tensor is inside tolerance, 1 when one is not, and -1
// (with err) when the fixture is missing, malformed or inconsistent.
int verify_fixture(const char *dir, FILE *out, char *err);
