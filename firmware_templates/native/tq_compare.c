/* tinyq native runtime: comparisons, MAXIMUM/MINIMUM, SELECT_V2, ARG_MAX/ARG_MIN,
 * REDUCE_MAX/REDUCE_MIN (tq_compare.h). */
#include <float.h>
#include <string.h>

#include "tq_compare.h"

static size_t elem_size(int32_t type)
{
    switch (type) {
    case TQ_T_S16: return 2;
    case TQ_T_S32: case TQ_T_F32: return 4;
    case TQ_T_S64: return 8;
    default: return 1;
    }
}

/* One element as a value both integers and floats order correctly in: integers
 * exactly as int64, float32 as float (every comparison below is done in its type). */
typedef struct {
    int64_t i;
    float f;
} tq_value;

static tq_value load(const uint8_t *base, int32_t type, int32_t index)
{
    tq_value v = {0, 0.0f};
    const uint8_t *src = base + (size_t)index * elem_size(type);
    switch (type) {
    case TQ_T_S8: { int8_t x; memcpy(&x, src, 1); v.i = x; break; }
    case TQ_T_S16: { int16_t x; memcpy(&x, src, 2); v.i = x; break; }
    case TQ_T_S32: { int32_t x; memcpy(&x, src, 4); v.i = x; break; }
    case TQ_T_S64: { int64_t x; memcpy(&x, src, 8); v.i = x; break; }
    case TQ_T_F32: memcpy(&v.f, src, 4); break;
    default: v.i = src[0] != 0u; break;                      /* bool */
    }
    return v;
}

/* a > b and a < b in the element's own type */
static int greater(int32_t type, tq_value a, tq_value b)
{
    return type == TQ_T_F32 ? a.f > b.f : a.i > b.i;
}

static int less(int32_t type, tq_value a, tq_value b)
{
    return type == TQ_T_F32 ? a.f < b.f : a.i < b.i;
}

static int less_equal(int32_t type, tq_value a, tq_value b)
{
    return type == TQ_T_F32 ? a.f <= b.f : a.i <= b.i;
}

static int equal(int32_t type, tq_value a, tq_value b)
{
    return type == TQ_T_F32 ? a.f == b.f : a.i == b.i;
}

/* TFLM's ComparisonWithScaling step: (x - zp) * 2^8, times a multiplier below one */
static tq_value rescale(tq_value v, int32_t zp, int32_t mult, int32_t shift)
{
    const int32_t shifted = ((int32_t)v.i - zp) * 256;   /* |x - zp| <= 65535: no overflow */
    v.i = tq_mul_by_quantized_mul(shifted, mult, shift);
    return v;
}

void tq_broadcast_step(const int32_t *dims, int32_t *pos, int32_t count, const int32_t *const *strides,
                 int32_t *index)
{
    int32_t k, j;
    for (k = TQ_MAX_DIMS - 1; k >= 0; --k) {
        ++pos[k];
        for (j = 0; j < count; ++j) {
            index[j] += strides[j][k];
        }
        if (pos[k] < dims[k]) {
            return;
        }
        for (j = 0; j < count; ++j) {
            index[j] -= strides[j][k] * dims[k];
        }
        pos[k] = 0;
    }
}

void tq_broadcast_apply(const tq_broadcast_geom *g, const void *params, tq_elem_fn fn,
                        const void *in1, size_t es1, const void *in2, size_t es2, void *out,
                        size_t eso)
{
    const uint8_t *a = (const uint8_t *)in1;
    const uint8_t *b = (const uint8_t *)in2;
    uint8_t *o = (uint8_t *)out;
    const int32_t *const strides[2] = {g->stride1, g->stride2};
    int32_t pos[TQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t index[2] = {0, 0};
    int32_t i;
    for (i = 0; i < g->size; ++i) {
        const int32_t i1 = g->broadcast ? index[0] : i;
        const int32_t i2 = g->broadcast ? index[1] : i;
        fn(params, a + (size_t)i1 * es1, b + (size_t)i2 * es2, o + (size_t)i * eso);
        if (g->broadcast) {
            tq_broadcast_step(g->dims, pos, 2, strides, index);
        }
    }
}

static void binary_one(const void *params, const uint8_t *a, const uint8_t *b, uint8_t *o)
{
    const tq_binary_params *p = (const tq_binary_params *)params;
    tq_value x = load(a, p->type, 0);
    tq_value y = load(b, p->type, 0);
    int r;
    if (p->op == TQ_OP_MAX || p->op == TQ_OP_MIN) {
        /* TFLM: el1 > el2 ? el1 : el2 (MAXIMUM), el1 < el2 ? el1 : el2 (MINIMUM) */
        const int first = p->op == TQ_OP_MAX ? greater(p->type, x, y) : less(p->type, x, y);
        memcpy(o, first ? a : b, elem_size(p->type));
        return;
    }
    if (p->scaled) {
        x = rescale(x, p->in1_zp, p->in1_mult, p->in1_shift);
        y = rescale(y, p->in2_zp, p->in2_mult, p->in2_shift);
    }
    switch (p->op) {
    case TQ_OP_EQ: r = equal(p->type, x, y); break;
    case TQ_OP_NE: r = !equal(p->type, x, y); break;
    case TQ_OP_LT: r = less(p->type, x, y); break;
    case TQ_OP_LE: r = less_equal(p->type, x, y); break;
    case TQ_OP_GT: r = greater(p->type, x, y); break;
    default: r = less_equal(p->type, y, x); break;              /* GE */
    }
    o[0] = (uint8_t)(r ? 1 : 0);
}

void tq_binary(const tq_binary_params *p, const void *in1, const void *in2, void *out)
{
    const size_t es = elem_size(p->type);
    const int pick = p->op == TQ_OP_MAX || p->op == TQ_OP_MIN;
    tq_broadcast_apply(&p->geom, p, binary_one, in1, es, in2, es, out, pick ? es : 1u);
}

void tq_select(const tq_select_params *p, const uint8_t *cond, const void *x, const void *y,
               void *out)
{
    const uint8_t *xs = (const uint8_t *)x;
    const uint8_t *ys = (const uint8_t *)y;
    uint8_t *o = (uint8_t *)out;
    const size_t es = (size_t)p->elem;
    const int32_t *const strides[3] = {p->stride_c, p->stride_x, p->stride_y};
    int32_t pos[TQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t index[3] = {0, 0, 0};
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const uint8_t *src = cond[index[0]] ? xs + (size_t)index[1] * es
                                            : ys + (size_t)index[2] * es;
        memcpy(o + (size_t)i * es, src, es);
        tq_broadcast_step(p->dims, pos, 3, strides, index);
    }
}

void tq_arg_minmax(const tq_arg_params *p, const void *in, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    int32_t outer, inner, i;
    for (outer = 0; outer < p->outer; ++outer) {
        for (inner = 0; inner < p->inner; ++inner) {
            const int32_t base = outer * p->axis * p->inner + inner;
            tq_value best = load(input, p->type, base);
            int32_t best_i = 0;
            for (i = 1; i < p->axis; ++i) {
                const tq_value v = load(input, p->type, base + i * p->inner);
                if (p->is_max ? greater(p->type, v, best) : less(p->type, v, best)) {
                    best = v;
                    best_i = i;
                }
            }
            if (p->out_bytes == 8) {
                const int64_t w = best_i;
                memcpy(o, &w, 8);
            } else {
                memcpy(o, &best_i, 4);
            }
            o += p->out_bytes;
        }
    }
}

/* the input offset of reduced element r (row-major over the reduced runs) */
static int32_t run_offset(int32_t n, const int32_t *dims, const int32_t *strides, int32_t r)
{
    int32_t off = 0, k;
    for (k = n - 1; k >= 0; --k) {
        off += (r % dims[k]) * strides[k];
        r /= dims[k];
    }
    return off;
}

void tq_reduce_minmax(const tq_reduce_params *p, const void *in, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    const size_t es = elem_size(p->type);
    int32_t kept_count = 1, red_count = 1, k, r;
    for (k = 0; k < p->n_kept; ++k) {
        kept_count *= p->kept_dims[k];
    }
    for (k = 0; k < p->n_red; ++k) {
        red_count *= p->red_dims[k];
    }
    for (k = 0; k < kept_count; ++k) {
        const int32_t base = run_offset(p->n_kept, p->kept_dims, p->kept_strides, k);
        /* TFLM starts from the type's lowest (highest) value: for integers that is the
         * first element's result too; a float input of only -inf (+inf) gives -FLT_MAX
         * (FLT_MAX), so floats start there, with no element chosen yet (-1) */
        int32_t best_at = p->type == TQ_T_F32 ? -1 : base;
        tq_value best = load(input, p->type, base);
        if (best_at < 0) {
            best.f = p->is_max ? -FLT_MAX : FLT_MAX;
        }
        for (r = best_at < 0 ? 0 : 1; r < red_count; ++r) {
            const int32_t at = base + run_offset(p->n_red, p->red_dims, p->red_strides, r);
            const tq_value v = load(input, p->type, at);
            /* TFLM: current = (in > current) ? in : current, from the lowest value */
            if (p->is_max ? greater(p->type, v, best) : less(p->type, v, best)) {
                best = v;
                best_at = at;
            }
        }
        if (best_at < 0) {
            memcpy(o + (size_t)k * es, &best.f, es);
        } else {
            memcpy(o + (size_t)k * es, input + (size_t)best_at * es, es);
        }
    }
}
