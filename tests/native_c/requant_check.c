/* Checks tq_mul_by_quantized_mul (branch-free) against a literal transcription of
 * gemmlowp's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT on random and
 * edge inputs, over every shift tinyq accepts (TQ_MIN_SHIFT..TQ_MAX_SHIFT; left
 * shifts wrap in uint32 as TFLM's int32 multiply does on every target). Built and run by tests/test_native_kernels.py. */
#include <stdio.h>
#include <stdlib.h>
#include "tq_kernels.h"
/* gemmlowp reference */
static int32_t ref(int32_t x, int32_t m, int shift) {
  int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  int32_t a = (int32_t)((uint32_t)x << left);
  int overflow = a == m && a == INT32_MIN;
  int64_t ab = (int64_t)a * m;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  int32_t hi = (int32_t)((ab + nudge) / (1ll << 31));
  if (overflow) hi = INT32_MAX;
  int32_t mask = (int32_t)((1ll << right) - 1);
  int32_t rem = hi & mask, thr = (mask >> 1) + (hi < 0);
  return (hi >> right) + (rem > thr);
}
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
int main(void) {
  long bad = 0;
  for (long i = 0; i < 5000000; i++) {
    int32_t x = (int32_t)rnd();
    if (i % 3 == 0) x >>= (rnd() % 31);
    int32_t m = (int32_t)(rnd() & 0x7fffffff);
    int shift = (int)(rnd() % (TQ_MAX_SHIFT - TQ_MIN_SHIFT + 1)) + TQ_MIN_SHIFT;
    if (shift > 0 && i % 2) x >>= shift + 1;
    if (ref(x, m, shift) != tq_mul_by_quantized_mul(x, m, shift)) { if (bad < 5) printf("x=%d m=%d s=%d\n", x, m, shift); bad++; }
  }
  int32_t edge[] = {0, 1, -1, INT32_MAX, INT32_MIN, 1<<30, -(1<<30), (1<<30)-1, -(1<<30)+1};
  for (int i = 0; i < 9; i++) for (int j = 0; j < 9; j++) for (int sh = TQ_MIN_SHIFT; sh <= TQ_MAX_SHIFT; sh++) {
    int32_t m = edge[j] < 0 ? -edge[j] - 1 : edge[j]; if (m < 0) m = INT32_MAX;
    if (ref(edge[i], m, sh) != tq_mul_by_quantized_mul(edge[i], m, sh)) { bad++; printf("edge %d %d %d\n", edge[i], m, sh); }
  }
  printf("mismatches: %ld\n", bad);
  return bad != 0;
}
