/* The one interface between the device harness (tq_main.c) and a runtime.
 * Implemented by tinyq's native runtime (generated model.c) and by the TFLM
 * glue (tflm_runtime.cc). The harness never sees anything else. */
#ifndef TQ_RUNTIME_H
#define TQ_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum tq_type { TQ_INT8 = 0, TQ_UINT8 = 1, TQ_INT16 = 2, TQ_INT32 = 3, TQ_FLOAT32 = 4 };

/* Prepare the model. 0 on success; otherwise tq_error() says why. */
int tq_init(void);
const char *tq_error(void);

int tq_num_inputs(void);
int tq_num_outputs(void);
uint8_t *tq_input(int i);
size_t tq_input_bytes(int i);
enum tq_type tq_input_type(int i);
const uint8_t *tq_output(int i);
size_t tq_output_bytes(int i);
enum tq_type tq_output_type(int i);
float tq_output_scale(int i);
int32_t tq_output_zero_point(int i);

/* Run one inference. 0 on success. */
int tq_invoke(void);

/* Bytes of tensor arena the runtime uses. */
size_t tq_arena_bytes(void);

/* Per-layer hook: called with end=0 before and end=1 after each op. */
typedef void (*tq_layer_hook_fn)(int layer, int end);
void tq_set_layer_hook(tq_layer_hook_fn fn);
int tq_num_layers(void);
const char *tq_layer_name(int i);

/* Identity: the first 12 hex digits of the .tflite's sha256, and "native"/"tflm". */
const char *tq_model_id(void);
const char *tq_runtime_name(void);

#ifdef __cplusplus
}
#endif

#endif /* TQ_RUNTIME_H */
