/* tinyq native runtime: copies (RESHAPE that could not be aliased) and CONCATENATION. */
#include <string.h>

#include "tq_kernels.h"

void tq_copy(void *dst, const void *src, size_t bytes)
{
    if (dst != src) {
        memmove(dst, src, bytes);
    }
}

void tq_concat(const tq_concat_params *p, const uint8_t *const *inputs, void *out)
{
    uint8_t *output = (uint8_t *)out;
    int32_t o, i;
    for (o = 0; o < p->outer; ++o) {
        for (i = 0; i < p->count; ++i) {
            const int32_t n = p->sizes[i];
            memcpy(output, inputs[i] + (size_t)o * (size_t)n, (size_t)n);
            output += n;
        }
    }
}
