/* FAKE libedgetpu (the Coral Edge TPU delegate), for tests only: not Coral's code, no Edge TPU.
 *
 * What is real: the shared library LiteRT loads with load_delegate(path), through the TFLite external
 * delegate plugin ABI that libedgetpu.so.1 exports (tflite_plugin_create_delegate /
 * tflite_plugin_destroy_delegate), and a TfLiteDelegate written against tflite/core/c/common.h: its
 * Prepare walks the execution plan, claims every node whose custom op is "edgetpu-custom-op" (the one op
 * edgetpu_compiler leaves where the TPU runs the graph) and hands them to
 * ReplaceNodeSubsetsWithDelegateKernels; the kernel dequantises the op's input with the tensor's scale
 * and zero point, runs the compiled program and quantises the result into the op's output.
 *
 * What is fake: the "compiled program". The fake compiler (compile_for_edgetpu in __init__.py) puts a
 * float32 .tflite in the op's custom options where edgetpu_compiler puts the TPU executable, and the
 * kernel runs it by calling tests.fakes.libedgetpu_fake.run_compiled in the Python process that loaded
 * LiteRT (the plain TFLite C API is not exported by the ai-edge-litert wheel). Options given to
 * load_delegate ("device": "usb:0" ...) are accepted and ignored, as there is one fake device.
 *
 * The structs below are the prefix of tflite/core/c/common.h this file uses, in its order: TFLite keeps
 * that order ABI-stable ("new values should be added only to the end of structs").
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1, kTfLiteDelegateError = 2 } TfLiteStatus;
typedef enum { kTfLiteFloat32 = 1, kTfLiteUInt8 = 3, kTfLiteInt8 = 9 } TfLiteType;
enum { kTfLiteBuiltinCustom = 32 };

typedef struct TfLiteIntArray { int size; int data[]; } TfLiteIntArray;
typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef struct { int type; void *params; } TfLiteQuantization;

typedef struct TfLiteTensor {
  int type;  /* TfLiteType */
  union { void *data; float *f; uint8_t *uint8; int8_t *int8; } data;
  TfLiteIntArray *dims;
  TfLiteQuantizationParams params;
  int allocation_type;
  size_t bytes;
  const void *allocation;
  const char *name;
  struct TfLiteDelegate *delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void *sparsity;
  const TfLiteIntArray *dims_signature;
} TfLiteTensor;  /* the whole struct: context->tensors is an array of them */

typedef struct TfLiteNode {
  TfLiteIntArray *inputs, *outputs, *intermediates, *temporaries;
  void *user_data;
  void *builtin_data;
  const void *custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate *delegate;
  bool might_have_side_effect;
} TfLiteNode;

struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteRegistration {
  void *(*init)(struct TfLiteContext *, const char *, size_t);
  void (*free)(struct TfLiteContext *, void *);
  TfLiteStatus (*prepare)(struct TfLiteContext *, TfLiteNode *);
  TfLiteStatus (*invoke)(struct TfLiteContext *, TfLiteNode *);
  const char *(*profiling_string)(const struct TfLiteContext *, const TfLiteNode *);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  void *registration_external;
  void *(*async_kernel)(struct TfLiteContext *, TfLiteNode *);
  uint64_t inplace_operator;
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *, TfLiteIntArray **);
  TfLiteTensor *tensors;
  void *impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext *, TfLiteTensor *, TfLiteIntArray *);
  void (*ReportError)(struct TfLiteContext *, const char *, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext *, int, int *);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext *, int, TfLiteNode **, TfLiteRegistration **);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration,
                                                        const TfLiteIntArray *, struct TfLiteDelegate *);
  int recommended_num_threads;
  void *GetExternalContext, *SetExternalContext;
  bool allow_fp32_relax_to_fp16;
  void *profiler;
  /* more members follow, never used here */
} TfLiteContext;

typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate *delegate;
  TfLiteIntArray *nodes_to_replace, *input_tensors, *output_tensors;
} TfLiteDelegateParams;

typedef struct TfLiteDelegate {
  void *data_;
  TfLiteStatus (*Prepare)(TfLiteContext *, struct TfLiteDelegate *);
  void *CopyFromBufferHandle, *CopyToBufferHandle, *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
} TfLiteDelegate;

/* --- the few Python C API calls the kernel makes (the hosting process is Python: LiteRT's wrapper) -- */
typedef struct _object PyObject;
extern int PyGILState_Ensure(void);
extern void PyGILState_Release(int);
extern PyObject *PyImport_ImportModule(const char *);
extern PyObject *PyObject_CallMethod(PyObject *, const char *, const char *, ...);
extern long PyLong_AsLong(PyObject *);
extern void Py_DecRef(PyObject *);
extern void PyErr_Print(void);

#define EDGETPU_OP "edgetpu-custom-op"
#define RUNNER_MODULE "tests.fakes.libedgetpu_fake"

static const char *claimed_names = EDGETPU_OP;  /* for the checks in Prepare */

typedef struct {
  const void *program;  /* the op's custom options: the "compiled" model */
  size_t program_size;
  int input, output;    /* tensor indices */
} Kernel;

static size_t elements(const TfLiteTensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->dims->size; i++) n *= (size_t)t->dims->data[i];
  return n;
}

static void *kernel_init(TfLiteContext *context, const char *buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams *params = (const TfLiteDelegateParams *)buffer;
  if (params->nodes_to_replace->size != 1) {
    context->ReportError(context, "fake libedgetpu: one %s per partition, got %d nodes", EDGETPU_OP,
                         params->nodes_to_replace->size);
    return NULL;
  }
  TfLiteNode *node;
  TfLiteRegistration *reg;
  if (context->GetNodeAndRegistration(context, params->nodes_to_replace->data[0], &node, &reg) != kTfLiteOk)
    return NULL;
  if (node->inputs->size != 1 || node->outputs->size != 1) {
    context->ReportError(context, "fake libedgetpu: %s with %d inputs and %d outputs (1 and 1 supported)",
                         EDGETPU_OP, node->inputs->size, node->outputs->size);
    return NULL;
  }
  Kernel *k = calloc(1, sizeof(Kernel));
  k->program = node->custom_initial_data;  /* in the model's flatbuffer, alive as long as the interpreter */
  k->program_size = (size_t)node->custom_initial_data_size;
  k->input = node->inputs->data[0];
  k->output = node->outputs->data[0];
  return k;
}

static void kernel_free(TfLiteContext *context, void *buffer) {
  (void)context;
  free(buffer);
}

static TfLiteStatus kernel_prepare(TfLiteContext *context, TfLiteNode *node) {
  Kernel *k = node->user_data;
  if (k == NULL) return kTfLiteError;
  const TfLiteTensor *in = &context->tensors[k->input], *out = &context->tensors[k->output];
  for (int i = 0; i < 2; i++) {
    const TfLiteTensor *t = i ? out : in;
    if (t->type != kTfLiteFloat32 && t->type != kTfLiteUInt8 && t->type != kTfLiteInt8) {
      context->ReportError(context, "fake libedgetpu: tensor %s has type %d (float32, uint8, int8 supported)",
                           t->name, t->type);
      return kTfLiteError;
    }
    if (t->type != kTfLiteFloat32 && t->params.scale == 0.0f) {
      context->ReportError(context, "fake libedgetpu: integer tensor %s has no quantisation", t->name);
      return kTfLiteError;
    }
  }
  return kTfLiteOk;
}

static float dequantised(const TfLiteTensor *t, size_t i) {
  switch (t->type) {
    case kTfLiteUInt8: return t->params.scale * ((int)t->data.uint8[i] - t->params.zero_point);
    case kTfLiteInt8: return t->params.scale * ((int)t->data.int8[i] - t->params.zero_point);
    default: return t->data.f[i];
  }
}

static void quantise_into(TfLiteTensor *t, size_t i, float x) {
  if (t->type == kTfLiteFloat32) { t->data.f[i] = x; return; }
  long q = lroundf(x / t->params.scale) + t->params.zero_point;
  long lo = t->type == kTfLiteUInt8 ? 0 : -128, hi = t->type == kTfLiteUInt8 ? 255 : 127;
  q = q < lo ? lo : q > hi ? hi : q;
  if (t->type == kTfLiteUInt8) t->data.uint8[i] = (uint8_t)q; else t->data.int8[i] = (int8_t)q;
}

static TfLiteStatus kernel_invoke(TfLiteContext *context, TfLiteNode *node) {
  Kernel *k = node->user_data;
  const TfLiteTensor *in = &context->tensors[k->input];
  TfLiteTensor *out = &context->tensors[k->output];
  size_t n_in = elements(in), n_out = elements(out);
  float *x = malloc(n_in * sizeof(float)), *y = malloc(n_out * sizeof(float));
  for (size_t i = 0; i < n_in; i++) x[i] = dequantised(in, i);
  int gil = PyGILState_Ensure();
  long status = -1;
  PyObject *module = PyImport_ImportModule(RUNNER_MODULE);
  if (module != NULL) {
    PyObject *r = PyObject_CallMethod(module, "run_compiled", "KnKnKn", (unsigned long long)(uintptr_t)k->program,
                                      (ptrdiff_t)k->program_size, (unsigned long long)(uintptr_t)x,
                                      (ptrdiff_t)n_in, (unsigned long long)(uintptr_t)y, (ptrdiff_t)n_out);
    if (r != NULL) { status = PyLong_AsLong(r); Py_DecRef(r); }
    Py_DecRef(module);
  }
  if (status != 0) PyErr_Print();
  PyGILState_Release(gil);
  if (status == 0)
    for (size_t i = 0; i < n_out; i++) quantise_into(out, i, y[i]);
  free(x);
  free(y);
  if (status != 0) {
    context->ReportError(context, "fake libedgetpu: the compiled program failed to run");
    return kTfLiteError;
  }
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext *context, TfLiteDelegate *delegate) {
  TfLiteIntArray *plan;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray *claimed = malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(plan->size + 1));
  claimed->size = 0;
  for (int i = 0; i < plan->size; i++) {
    TfLiteNode *node;
    TfLiteRegistration *reg;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    if (reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name && !strcmp(reg->custom_name, claimed_names))
      claimed->data[claimed->size++] = plan->data[i];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claimed->size > 0) {
    TfLiteRegistration kernel = {0};
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kTfLiteBuiltinCustom;
    kernel.custom_name = "EdgeTpuDelegateForCustomOp";  /* the real delegate kernel's name */
    kernel.version = 1;
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, claimed, delegate);
  }
  free(claimed);
  return status;
}

/* How many delegates are alive: read by the tests through ctypes, to see LiteRT created and freed one. */
int libedgetpu_fake_live_delegates = 0;

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report)(const char *)) {
  (void)keys; (void)values; (void)n; (void)report;
  TfLiteDelegate *d = calloc(1, sizeof(TfLiteDelegate));
  d->Prepare = delegate_prepare;
  /* kTfLiteDelegateFlagsAllowDynamicTensors: without it TFLite prepares every node before delegating
     (to look for dynamic tensors), and the edgetpu-custom-op, which only this delegate can run, fails. */
  d->flags = 1;
  libedgetpu_fake_live_delegates++;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *d) {
  if (d != NULL) libedgetpu_fake_live_delegates--;
  free(d);
}
