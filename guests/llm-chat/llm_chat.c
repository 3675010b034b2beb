/*
 * llm-chat: a wasi-nn guest written to WasmEdge's GGML conventions, the way
 * LlamaEdge's chat, API-server and embedding guests use them:
 *
 *   load_by_name_with_config(model, JSON options)   (or load("preload:PATH"))
 *   set_input 0 = prompt bytes (u8, dims [1]), set_input 1 = JSON metadata
 *   compute + get_output 0 (text) / 1 (metadata JSON)       -- chat, embed
 *   compute_single + get_output_single until EndOfSequence  -- stream
 *   fini_single, finalize_execution_context, unload
 *
 * Output: the generated text (or embedding JSON) on stdout, exactly as the
 * host returns it; the output metadata on stderr ("metadata: {...}").
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

/* WasmEdge's numbering: GGML encoding 6, target AUTO 3, errors 100-103. */
enum { GGML = 6, TARGET_AUTO = 3, U8 = 3 };
enum { END_OF_SEQUENCE = 100, CONTEXT_FULL = 101, PROMPT_TOO_LONG = 102, MODEL_NOT_FOUND = 103 };

#define WASMEDGE_IMPORT(name) \
    __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

WASMEDGE_IMPORT("compute_single")
wasi_nn_errno_t wasmedge_compute_single(wasi_nn_exec_ctx_t ctx);

WASMEDGE_IMPORT("get_output_single")
wasi_nn_errno_t wasmedge_get_output_single(wasi_nn_exec_ctx_t ctx, uint32_t index,
                                           uint8_t *out_buf, uint32_t out_buf_max_bytes,
                                           uint32_t *out_bytes_written);

WASMEDGE_IMPORT("fini_single")
wasi_nn_errno_t wasmedge_fini_single(wasi_nn_exec_ctx_t ctx);

static const char usage_text[] =
    "usage: llm-chat [--mode chat|stream|embed] [--model NAME] [--config JSON]\n"
    "                [--preload PATH] [--metadata JSON] --prompt TEXT [--prompt TEXT ...]\n"
    "  --mode M        chat: compute + get_output (default); stream: compute_single\n"
    "                  until EndOfSequence; embed: compute, print the embedding JSON\n"
    "  --model NAME    load_by_name_with_config(NAME, config) (default: default)\n"
    "  --config JSON   options given at load (ctx-size, n-predict, temp, ...)\n"
    "  --preload PATH  load(\"preload:PATH\", GGML, AUTO) instead of by name\n"
    "  --metadata JSON set_input(1, JSON) before each prompt\n"
    "  --prompt TEXT   one turn; several run one after another on one context\n";

static void usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "llm-chat: %s%s\n", msg, arg ? arg : "");
    fputs(usage_text, stderr);
    exit(2);
}

static void check_nn(const char *operation, wasi_nn_errno_t err)
{
    if (err == WASI_NN_ERRNO_SUCCESS)
        return;
    fflush(stdout);
    fprintf(stderr, "llm-chat: %s failed: errno %" PRIu32 "\n", operation, err);
    exit(1); /* WASI exit codes stop at 125: the errno is in the message */
}

static void set_bytes(wasi_nn_exec_ctx_t ctx, uint32_t index, const char *text)
{
    static const uint32_t dims[1] = {1}; /* as WasmEdge guests send it */
    wasi_nn_tensor_t tensor;
    memset(&tensor, 0, sizeof tensor);
    tensor.dims = dims;
    tensor.dims_len = 1;
    tensor.type = U8;
    tensor.data = (const uint8_t *)text;
    tensor.data_len = (uint32_t)strlen(text);
    check_nn(index == 0 ? "set_input(prompt)" : "set_input(metadata)",
             wasi_nn_set_input(ctx, index, &tensor));
}

/* get_output, growing the buffer when the host says TooLarge with the size it needs. */
static uint32_t read_output(wasi_nn_exec_ctx_t ctx, uint32_t index, uint8_t **buf, uint32_t *cap)
{
    for (;;) {
        uint32_t written = 0;
        wasi_nn_errno_t err = wasi_nn_get_output(ctx, index, *buf, *cap, &written);
        if (err == WASI_NN_ERRNO_TOO_LARGE && written > *cap) {
            free(*buf);
            *cap = written;
            *buf = malloc(*cap);
            if (!*buf)
                usage_error("out of memory", NULL);
            continue;
        }
        check_nn("get_output", err);
        return written;
    }
}

static void print_metadata(wasi_nn_exec_ctx_t ctx, int single)
{
    uint8_t meta[1024];
    uint32_t written = 0;
    wasi_nn_errno_t err = single
        ? wasmedge_get_output_single(ctx, 1, meta, sizeof meta, &written)
        : wasi_nn_get_output(ctx, 1, meta, sizeof meta, &written);
    check_nn("get_output(metadata)", err);
    fprintf(stderr, "metadata: %.*s\n", (int)written, (const char *)meta);
}

int main(int argc, char **argv)
{
    const char *mode = "chat", *model = "default", *config = NULL, *preload = NULL;
    const char *metadata = NULL;
    const char *prompts[64];
    int n_prompts = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (i + 1 >= argc)
            usage_error("missing value for ", arg);
        if (strcmp(arg, "--mode") == 0)
            mode = argv[++i];
        else if (strcmp(arg, "--model") == 0)
            model = argv[++i];
        else if (strcmp(arg, "--config") == 0)
            config = argv[++i];
        else if (strcmp(arg, "--preload") == 0)
            preload = argv[++i];
        else if (strcmp(arg, "--metadata") == 0)
            metadata = argv[++i];
        else if (strcmp(arg, "--prompt") == 0 && n_prompts < 64)
            prompts[n_prompts++] = argv[++i];
        else
            usage_error("unknown option ", arg);
    }
    int stream = strcmp(mode, "stream") == 0;
    if (!stream && strcmp(mode, "chat") != 0 && strcmp(mode, "embed") != 0)
        usage_error("unknown mode ", mode);
    if (n_prompts == 0)
        usage_error("no --prompt", NULL);

    wasi_nn_graph_t graph;
    if (preload) {
        /* WasmEdge's builder for a model preloaded by the host: no weights pass through here. */
        size_t n = strlen(preload) + 8;
        char *builder = malloc(n + 1);
        if (!builder)
            usage_error("out of memory", NULL);
        snprintf(builder, n + 1, "preload:%s", preload);
        wasi_nn_graph_builder_t b = {(const uint8_t *)builder, (uint32_t)n};
        check_nn("load(preload)", wasi_nn_load(&b, 1, GGML, TARGET_AUTO, &graph));
        free(builder);
    } else {
        const char *cfg = config ? config : "{}";
        check_nn("load_by_name_with_config",
                 wasi_nn_load_by_name_with_config(model, (uint32_t)strlen(model), cfg,
                                                  (uint32_t)strlen(cfg), &graph));
    }
    wasi_nn_exec_ctx_t ctx;
    check_nn("init_execution_context", wasi_nn_init_execution_context(graph, &ctx));

    uint32_t cap = 4096;
    uint8_t *buf = malloc(cap);
    if (!buf)
        usage_error("out of memory", NULL);
    for (int p = 0; p < n_prompts; p++) {
        if (metadata)
            set_bytes(ctx, 1, metadata);
        set_bytes(ctx, 0, prompts[p]);
        if (!stream) {
            wasi_nn_errno_t err = wasi_nn_compute(ctx);
            if (err == CONTEXT_FULL)
                fprintf(stderr, "llm-chat: context full\n"); /* the text so far is still output 0 */
            else
                check_nn("compute", err);
            uint32_t n = read_output(ctx, 0, &buf, &cap);
            fwrite(buf, 1, n, stdout);
            fflush(stdout);
            print_metadata(ctx, 0);
            continue;
        }
        for (;;) {
            wasi_nn_errno_t err = wasmedge_compute_single(ctx);
            if (err == END_OF_SEQUENCE)
                break;
            if (err == CONTEXT_FULL) {
                fprintf(stderr, "llm-chat: context full\n");
                break;
            }
            check_nn("compute_single", err);
            uint8_t piece[256];
            uint32_t written = 0;
            check_nn("get_output_single", wasmedge_get_output_single(ctx, 0, piece, sizeof piece, &written));
            fwrite(piece, 1, written, stdout);
            fflush(stdout); /* token by token, as a chat UI shows it */
        }
        print_metadata(ctx, 1);
        check_nn("fini_single", wasmedge_fini_single(ctx));
    }
    free(buf);
    check_nn("finalize_execution_context", wasi_nn_finalize_execution_context(ctx));
    check_nn("unload", wasi_nn_unload(graph));
    return 0;
}
