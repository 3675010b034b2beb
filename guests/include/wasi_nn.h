/*
 * wasi_nn.h - guest-side declarations for the core-wasm wasi-nn ABI
 * (import module "wasi_ephemeral_nn", witx lineage).
 *
 * Written for the wasinn project from the wasi-nn witx ABI as Wasmtime,
 * WasmEdge and WAMR implement it (docs/compatibility.md).  Enum values follow the current witx
 * numbering (tensor types with f64/i64, errno codes up to not_found).
 *
 * Conventions of the lowered ABI:
 *   - every function returns a wasi_nn_errno_t (0 = success);
 *   - results are written through trailing out-pointers;
 *   - lists are passed as (pointer, element count);
 *   - the tensor record is passed by pointer (20 bytes, 4-byte aligned).
 */
#ifndef WASINN_GUEST_WASI_NN_H
#define WASINN_GUEST_WASI_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- handles and scalar types ---------------------------------------- */

typedef uint32_t wasi_nn_graph_t;             /* graph handle (0 is valid) */
typedef uint32_t wasi_nn_exec_ctx_t;          /* execution-context handle  */
typedef uint32_t wasi_nn_errno_t;             /* errno as returned (i32)   */
typedef uint32_t wasi_nn_graph_encoding_t;    /* u8 enum, passed as i32    */
typedef uint32_t wasi_nn_execution_target_t;  /* u8 enum, passed as i32    */
typedef uint8_t  wasi_nn_tensor_type_t;       /* u8 enum, stored as a byte */

/* ---- enums -------------------------------------------------------------- */

enum {
    WASI_NN_ENCODING_OPENVINO       = 0,
    WASI_NN_ENCODING_ONNX           = 1,
    WASI_NN_ENCODING_TENSORFLOW     = 2,
    WASI_NN_ENCODING_PYTORCH        = 3,
    WASI_NN_ENCODING_TENSORFLOWLITE = 4,
    WASI_NN_ENCODING_AUTODETECT     = 5
};

enum {
    WASI_NN_TARGET_CPU = 0,
    WASI_NN_TARGET_GPU = 1,
    WASI_NN_TARGET_TPU = 2
};

enum {
    WASI_NN_TYPE_F16 = 0,
    WASI_NN_TYPE_F32 = 1,
    WASI_NN_TYPE_F64 = 2,
    WASI_NN_TYPE_U8  = 3,
    WASI_NN_TYPE_I32 = 4,
    WASI_NN_TYPE_I64 = 5
};

enum {
    WASI_NN_ERRNO_SUCCESS               = 0,
    WASI_NN_ERRNO_INVALID_ARGUMENT      = 1,
    WASI_NN_ERRNO_INVALID_ENCODING      = 2,
    WASI_NN_ERRNO_MISSING_MEMORY        = 3,
    WASI_NN_ERRNO_BUSY                  = 4,
    WASI_NN_ERRNO_RUNTIME_ERROR         = 5,
    WASI_NN_ERRNO_UNSUPPORTED_OPERATION = 6,
    WASI_NN_ERRNO_TOO_LARGE             = 7,
    WASI_NN_ERRNO_NOT_FOUND             = 8
};

/* ---- records -------------------------------------------------------------- */

/* One entry of the graph-builder array given to load(): an opaque byte
 * buffer (e.g. OpenVINO: entry 0 = model XML, entry 1 = weights). */
typedef struct wasi_nn_graph_builder {
    const uint8_t *buf;   /* offset 0 */
    uint32_t size;        /* offset 4: length in bytes */
} wasi_nn_graph_builder_t;

/* Tensor record read by set_input(): 20 bytes, 4-byte aligned. */
typedef struct wasi_nn_tensor {
    const uint32_t *dims;        /* offset 0: dimension array            */
    uint32_t dims_len;           /* offset 4: rank (number of u32s)       */
    wasi_nn_tensor_type_t type;  /* offset 8: tensor type code            */
    uint8_t pad[3];              /* offset 9: explicit padding (zeroed)   */
    const uint8_t *data;         /* offset 12: tensor bytes, row-major    */
    uint32_t data_len;           /* offset 16: length of data in bytes    */
} wasi_nn_tensor_t;

#if defined(__wasm32__)
_Static_assert(sizeof(wasi_nn_graph_builder_t) == 8, "graph builder is 8 bytes");
_Static_assert(sizeof(wasi_nn_tensor_t) == 20, "tensor record is 20 bytes");
_Static_assert(offsetof(wasi_nn_tensor_t, type) == 8, "tensor.type at 8");
_Static_assert(offsetof(wasi_nn_tensor_t, data) == 12, "tensor.data at 12");
_Static_assert(offsetof(wasi_nn_tensor_t, data_len) == 16, "tensor.data_len at 16");
#endif

/* ---- imported functions --------------------------------------------------- */

#define WASI_NN_IMPORT(name) \
    __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

/* Standard witx functions. */
WASI_NN_IMPORT("load")
wasi_nn_errno_t wasi_nn_load(const wasi_nn_graph_builder_t *builders,
                             uint32_t builder_count,
                             wasi_nn_graph_encoding_t encoding,
                             wasi_nn_execution_target_t target,
                             wasi_nn_graph_t *out_graph);

WASI_NN_IMPORT("load_by_name")
wasi_nn_errno_t wasi_nn_load_by_name(const char *name, uint32_t name_len,
                                     wasi_nn_graph_t *out_graph);

WASI_NN_IMPORT("init_execution_context")
wasi_nn_errno_t wasi_nn_init_execution_context(wasi_nn_graph_t graph,
                                               wasi_nn_exec_ctx_t *out_ctx);

WASI_NN_IMPORT("set_input")
wasi_nn_errno_t wasi_nn_set_input(wasi_nn_exec_ctx_t ctx, uint32_t index,
                                  const wasi_nn_tensor_t *tensor);

WASI_NN_IMPORT("compute")
wasi_nn_errno_t wasi_nn_compute(wasi_nn_exec_ctx_t ctx);

WASI_NN_IMPORT("get_output")
wasi_nn_errno_t wasi_nn_get_output(wasi_nn_exec_ctx_t ctx, uint32_t index,
                                   uint8_t *out_buf, uint32_t out_buf_max_bytes,
                                   uint32_t *out_bytes_written);

/* WasmEdge extensions (not provided by every host; a guest that references
 * them will only link against hosts that define them). */
WASI_NN_IMPORT("load_by_name_with_config")
wasi_nn_errno_t wasi_nn_load_by_name_with_config(const char *name, uint32_t name_len,
                                                 const char *config, uint32_t config_len,
                                                 wasi_nn_graph_t *out_graph);

WASI_NN_IMPORT("unload")
wasi_nn_errno_t wasi_nn_unload(wasi_nn_graph_t graph);

WASI_NN_IMPORT("finalize_execution_context")
wasi_nn_errno_t wasi_nn_finalize_execution_context(wasi_nn_exec_ctx_t ctx);

#undef WASI_NN_IMPORT

#ifdef __cplusplus
}
#endif

#endif /* WASINN_GUEST_WASI_NN_H */
