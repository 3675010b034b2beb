/*
 * probe: the edge-case guest of wasinn's component tests.
 *
 * A freestanding C program (no libc, no WASI) that calls wasi:nn@0.2.0-rc-2024-10-28 through the
 * canonical ABI written out by hand, so that it can also do what a generated binding never would:
 * use a handle after dropping it, pass a handle of the wrong type, pass a number that is no handle.
 * It exports one function (world wasinn:guest/probe):
 *
 *     probe: func(scenario: string, model: list<u8>) -> string
 *
 * Every scenario loads `model` (encoding autodetect) unless it says otherwise; the model must have
 * one f32[1,4] input named "x" (the test backend's affine model). The answer is a line of text:
 * "ok ..." or "err CODE DATA" (CODE: the error-code case, DATA: error.data()). Scenarios that break
 * the component model's rules end in a trap raised by the runtime, which the test expects.
 *
 * Built by guests/component/build.py (clang --target=wasm32 -nostdlib, then wasm-tools component
 * embed/new).
 */
#include <stddef.h>
#include <stdint.h>

#define NN "0.2.0-rc-2024-10-28"
#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))

/* ---- imports (flattened canonical ABI signatures) ----------------------------------------------- */
IMPORT("wasi:nn/tensor@" NN, "[constructor]tensor")
extern int32_t nn_tensor_new(int32_t dims, int32_t dims_len, int32_t ty, int32_t data, int32_t data_len);
IMPORT("wasi:nn/tensor@" NN, "[method]tensor.dimensions")
extern void nn_tensor_dimensions(int32_t self, int32_t ret);
IMPORT("wasi:nn/tensor@" NN, "[method]tensor.ty")
extern int32_t nn_tensor_ty(int32_t self);
IMPORT("wasi:nn/tensor@" NN, "[method]tensor.data")
extern void nn_tensor_data(int32_t self, int32_t ret);
IMPORT("wasi:nn/tensor@" NN, "[resource-drop]tensor")
extern void nn_tensor_drop(int32_t self);

IMPORT("wasi:nn/graph@" NN, "load")
extern void nn_load(int32_t builders, int32_t builders_len, int32_t encoding, int32_t target, int32_t ret);
IMPORT("wasi:nn/graph@" NN, "load-by-name")
extern void nn_load_by_name(int32_t name, int32_t name_len, int32_t ret);
IMPORT("wasi:nn/graph@" NN, "[method]graph.init-execution-context")
extern void nn_init_execution_context(int32_t self, int32_t ret);
IMPORT("wasi:nn/graph@" NN, "[resource-drop]graph")
extern void nn_graph_drop(int32_t self);

IMPORT("wasi:nn/inference@" NN, "[method]graph-execution-context.compute")
extern void nn_compute(int32_t self, int32_t inputs, int32_t inputs_len, int32_t ret);
IMPORT("wasi:nn/inference@" NN, "[resource-drop]graph-execution-context")
extern void nn_context_drop(int32_t self);

IMPORT("wasi:nn/errors@" NN, "[method]error.code")
extern int32_t nn_error_code(int32_t self);
IMPORT("wasi:nn/errors@" NN, "[method]error.data")
extern void nn_error_data(int32_t self, int32_t ret);
IMPORT("wasi:nn/errors@" NN, "[resource-drop]error")
extern void nn_error_drop(int32_t self);

enum { FP16, FP32, FP64, BF16, U8, I32, I64 };
enum { AUTODETECT = 6, CPU = 0 };
static const char *const CODES[] = {"invalid-argument", "invalid-encoding", "timeout", "runtime-error",
                                    "unsupported-operation", "too-large", "not-found", "security", "unknown"};

#define P(x) ((int32_t)(uintptr_t)(x))

/* ---- memory: a bump allocator (the host writes lists and strings through cabi_realloc) ---------- */
extern unsigned char __heap_base;
static uintptr_t heap_next;

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size)
{
    if (!heap_next)
        heap_next = (uintptr_t)&__heap_base;
    uintptr_t p = (heap_next + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t end = p + new_size;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535u) / 65536u) == (size_t)-1)
        __builtin_trap();
    heap_next = end;
    unsigned char *dst = (unsigned char *)p;
    for (size_t i = 0; old && i < old_size && i < new_size; i++)
        dst[i] = ((unsigned char *)old)[i];
    return (void *)p;
}

/* ---- the answer -------------------------------------------------------------------------------- */
static char out[65536];
static size_t out_len;
static int32_t ret_area[2];

static void put(const char *s)
{
    while (*s && out_len < sizeof out)
        out[out_len++] = *s++;
}

static void put_n(const char *s, size_t n)
{
    for (size_t i = 0; i < n && out_len < sizeof out; i++)
        out[out_len++] = s[i];
}

static void put_u(uint32_t v)
{
    char buf[12];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_n(&buf[--n], 1);
}

static void put_hex(const unsigned char *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        put_n(&digits[b[i] >> 4], 1);
        put_n(&digits[b[i] & 15], 1);
    }
}

static int streq(const char *a, size_t a_len, const char *b)
{
    size_t i = 0;
    for (; i < a_len && b[i]; i++)
        if (a[i] != b[i])
            return 0;
    return i == a_len && !b[i];
}

/* Report an error resource ("err CODE DATA") and drop it. */
static void put_error(int32_t error)
{
    int32_t code = nn_error_code(error);
    int32_t data[2];
    nn_error_data(error, P(data));
    put("err ");
    put(code >= 0 && code < 9 ? CODES[code] : "?");
    put(" ");
    put_n((const char *)(uintptr_t)data[0], (size_t)data[1]);
    nn_error_drop(error);
}

/* result<own<T>, own<error>>: discriminant byte, then the handle (4-aligned). */
struct handle_result {
    uint8_t is_err;
    int32_t handle;
};

/* result<list<named-tensor>, own<error>> */
struct list_result {
    uint8_t is_err;
    int32_t ptr_or_error;
    int32_t len;
};

struct named_tensor {
    int32_t name;
    int32_t name_len;
    int32_t tensor;
};

static const uint32_t DIMS[2] = {1, 4};
static const float INPUT[4] = {1.0f, 2.0f, 3.0f, 4.0f};

static int32_t input_tensor(void)
{
    return nn_tensor_new(P(DIMS), 2, FP32, P(INPUT), sizeof INPUT);
}

static int load(const unsigned char *model, size_t len, int32_t *graph)
{
    int32_t builder[2] = {P(model), (int32_t)len};
    struct handle_result r;
    nn_load(P(builder), 1, AUTODETECT, CPU, P(&r));
    if (r.is_err) {
        put_error(r.handle);
        return 0;
    }
    *graph = r.handle;
    return 1;
}

static int init(int32_t graph, int32_t *context)
{
    struct handle_result r;
    nn_init_execution_context(graph, P(&r));
    if (r.is_err) {
        put_error(r.handle);
        return 0;
    }
    *context = r.handle;
    return 1;
}

/* compute with one named input; "ok" + every output's name, dims, type and data (hex). */
static void compute_named(int32_t context, const char *name, int32_t tensor, int drop_outputs)
{
    size_t name_len = 0;
    while (name[name_len])
        name_len++;
    struct named_tensor input = {P(name), (int32_t)name_len, tensor};
    struct list_result r;
    nn_compute(context, P(&input), 1, P(&r));
    if (r.is_err) {
        put_error(r.ptr_or_error);
        return;
    }
    put("ok");
    const struct named_tensor *outs = (const struct named_tensor *)(uintptr_t)r.ptr_or_error;
    for (int32_t i = 0; i < r.len; i++) {
        int32_t dims[2], data[2];
        nn_tensor_dimensions(outs[i].tensor, P(dims));
        nn_tensor_data(outs[i].tensor, P(data));
        put(" ");
        put_n((const char *)(uintptr_t)outs[i].name, (size_t)outs[i].name_len);
        put(":");
        for (int32_t d = 0; d < dims[1]; d++) {
            if (d)
                put("x");
            put_u(((const uint32_t *)(uintptr_t)dims[0])[d]);
        }
        put(":");
        put_u((uint32_t)nn_tensor_ty(outs[i].tensor));
        put(":");
        put_hex((const unsigned char *)(uintptr_t)data[0], (size_t)data[1]);
        if (drop_outputs)
            nn_tensor_drop(outs[i].tensor);
    }
}

static void scenario(const char *s, size_t s_len, const unsigned char *model, size_t model_len)
{
    int32_t graph, context;
#define IS(name) streq(s, s_len, name)
    if (IS("unknown-name")) {
        struct handle_result r;
        nn_load_by_name(P("nope"), 4, P(&r));
        if (r.is_err)
            put_error(r.handle);
        else
            put("ok unexpected graph");
        return;
    }
    if (IS("by-name")) {
        struct handle_result r;
        nn_load_by_name(P(model), (int32_t)model_len, P(&r)); /* the "model" is the name here */
        if (r.is_err) {
            put_error(r.handle);
            return;
        }
        if (init(r.handle, &context))
            compute_named(context, "x", input_tensor(), 1);
        return; /* graph and context left for the store to release */
    }
    if (IS("tensor-roundtrip")) { /* no model needed */
        int32_t t = input_tensor();
        int32_t dims[2], data[2];
        nn_tensor_dimensions(t, P(dims));
        nn_tensor_data(t, P(data));
        put("ok ");
        put_u((uint32_t)dims[1]);
        put(" ");
        put_u(((const uint32_t *)(uintptr_t)dims[0])[1]);
        put(" ");
        put_u((uint32_t)nn_tensor_ty(t));
        put(" ");
        put_hex((const unsigned char *)(uintptr_t)data[0], (size_t)data[1]);
        nn_tensor_drop(t);
        return;
    }
    if (IS("bad-handle")) { /* a number the guest was never given */
        nn_tensor_ty(12345);
        put("ok survived");
        return;
    }
    if (IS("use-after-drop")) {
        int32_t t = input_tensor();
        nn_tensor_drop(t);
        nn_tensor_ty(t);
        put("ok survived");
        return;
    }
    if (IS("double-drop")) {
        int32_t t = input_tensor();
        nn_tensor_drop(t);
        nn_tensor_drop(t);
        put("ok survived");
        return;
    }
    if (IS("leak-tensors")) { /* ten tensors never dropped: the store must release them */
        for (int i = 0; i < 10; i++)
            input_tensor();
        put("ok");
        return;
    }
    if (s_len > 5 && streq(s, 5, "bulk ")) {
        /* "bulk N [R]": R inferences (default 1) on one context with a u8[N] tensor made here (the
         * model: identity on u8[N] input "x"), each output read back; for the transfer benchmark,
         * which times R = 1 and R > 1 to take the load out. */
        uint32_t n = 0, rounds = 0;
        size_t i = 5;
        for (; i < s_len && s[i] >= '0' && s[i] <= '9'; i++)
            n = n * 10 + (uint32_t)(s[i] - '0');
        for (i++; i < s_len && s[i] >= '0' && s[i] <= '9'; i++)
            rounds = rounds * 10 + (uint32_t)(s[i] - '0');
        if (!rounds)
            rounds = 1;
        unsigned char *data = cabi_realloc(0, 0, 8, n ? n : 1);
        for (uint32_t k = 0; k < n; k++)
            data[k] = (unsigned char)k;
        uint32_t dims[1] = {n};
        if (!load(model, model_len, &graph) || !init(graph, &context))
            return;
        uintptr_t mark = heap_next;
        int32_t got[2] = {0, 0};
        for (uint32_t round = 0; round < rounds; round++) {
            struct named_tensor input = {P("x"), 1, nn_tensor_new(P(dims), 1, U8, P(data), (int32_t)n)};
            struct list_result r;
            nn_compute(context, P(&input), 1, P(&r));
            if (r.is_err) {
                put_error(r.ptr_or_error);
                return;
            }
            const struct named_tensor *outs = (const struct named_tensor *)(uintptr_t)r.ptr_or_error;
            nn_tensor_data(outs[0].tensor, P(got));
            for (int32_t k = 0; k < r.len; k++)
                nn_tensor_drop(outs[k].tensor);
            heap_next = mark; /* the next round reuses the memory */
        }
        put("ok ");
        put_u((uint32_t)got[1]);
        nn_context_drop(context);
        nn_graph_drop(graph);
        heap_next = (uintptr_t)data;
        return;
    }
    if (!load(model, model_len, &graph))
        return;
    if (IS("load")) {
        put("ok");
        nn_graph_drop(graph);
        return;
    }
    if (IS("wrong-type")) { /* a graph handle where a tensor is expected */
        nn_tensor_ty(graph);
        put("ok survived");
        return;
    }
    if (!init(graph, &context))
        return;
    if (IS("infer")) {
        compute_named(context, "x", input_tensor(), 1);
        nn_context_drop(context);
        nn_graph_drop(graph);
    } else if (IS("infer-by-index")) {
        compute_named(context, "0", input_tensor(), 1);
        nn_context_drop(context);
        nn_graph_drop(graph);
    } else if (IS("infer-twice")) {
        compute_named(context, "x", input_tensor(), 1);
        put(" | ");
        compute_named(context, "x", input_tensor(), 1);
        nn_context_drop(context);
        nn_graph_drop(graph);
    } else if (IS("infer-keep")) { /* nothing dropped: the store releases it all */
        compute_named(context, "x", input_tensor(), 0);
    } else if (IS("graph-dropped-first")) { /* the context outlives its graph handle */
        nn_graph_drop(graph);
        compute_named(context, "x", input_tensor(), 1);
        nn_context_drop(context);
    } else if (IS("bad-input-name")) {
        compute_named(context, "nope", input_tensor(), 1);
    } else if (IS("wrong-size")) {
        compute_named(context, "x", nn_tensor_new(P(DIMS), 2, FP32, P(INPUT), 3), 1);
    } else if (IS("wrong-type-tensor")) {
        compute_named(context, "x", nn_tensor_new(P(DIMS), 2, I32, P(INPUT), sizeof INPUT), 1);
    } else if (IS("tensor-used-after-compute")) { /* compute took the tensor: the handle is gone */
        int32_t t = input_tensor();
        compute_named(context, "x", t, 1);
        nn_tensor_ty(t);
        put(" survived");
    } else if (IS("context-after-drop")) {
        nn_context_drop(context);
        compute_named(context, "x", input_tensor(), 1);
    } else {
        put("err unknown-scenario ");
        put_n(s, s_len);
    }
#undef IS
}

__attribute__((export_name("probe")))
int32_t *probe(const char *s, size_t s_len, const unsigned char *model, size_t model_len)
{
    out_len = 0;
    scenario(s, s_len, model, model_len);
    ret_area[0] = P(out);
    ret_area[1] = (int32_t)out_len;
    return ret_area;
}
