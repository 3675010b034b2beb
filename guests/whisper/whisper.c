/*
 * whisper: a wasi-nn guest written to WasmEdge's Whisper conventions (its
 * wasmedge-ggml/whisper example), importing only the standard functions:
 *
 *   load(model bytes, encoding 9 = Whisper, CPU)   or load_by_name("default")
 *   set_input 1 = JSON options (optional)
 *   set_input 0 = the WAV file's bytes, declared f32 with dims [1, byte length]
 *   compute, get_output 0 = the text, one "[t0 --> t1]  text" line per segment
 *
 * usage: whisper AUDIO.wav [MODEL.bin] [--metadata JSON]
 * The text goes to stdout exactly as the host returns it; messages to stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

enum { WHISPER = 9, CPU = 0, F32 = 1, U8 = 3 };
#define OUTPUT_MAX (1u << 20)

static uint8_t *read_file(const char *path, uint32_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "whisper: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap) break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!buf) fprintf(stderr, "whisper: out of memory reading %s\n", path);
    *size = (uint32_t)len;
    return buf;
}

static int fail(const char *what, wasi_nn_errno_t err) {
    fprintf(stderr, "whisper: %s failed: errno %u\n", what, (unsigned)err);
    return 1;
}

int main(int argc, char **argv) {
    const char *audio_path = NULL, *model_path = NULL, *metadata = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--metadata") == 0 && i + 1 < argc) metadata = argv[++i];
        else if (!audio_path) audio_path = argv[i];
        else if (!model_path) model_path = argv[i];
        else {
            fprintf(stderr, "usage: whisper AUDIO.wav [MODEL.bin] [--metadata JSON]\n");
            return 2;
        }
    }
    if (!audio_path) {
        fprintf(stderr, "usage: whisper AUDIO.wav [MODEL.bin] [--metadata JSON]\n");
        return 2;
    }

    wasi_nn_graph_t graph;
    wasi_nn_errno_t err;
    if (model_path) {
        uint32_t model_size;
        uint8_t *model = read_file(model_path, &model_size);
        if (!model) return 1;
        wasi_nn_graph_builder_t builder = {model, model_size};
        err = wasi_nn_load(&builder, 1, WHISPER, CPU, &graph);
        free(model);
        if (err) return fail("load", err);
    } else {
        err = wasi_nn_load_by_name("default", 7, &graph);
        if (err) return fail("load_by_name", err);
    }

    wasi_nn_exec_ctx_t ctx;
    err = wasi_nn_init_execution_context(graph, &ctx);
    if (err) return fail("init_execution_context", err);

    if (metadata) {
        uint32_t dims[1] = {(uint32_t)strlen(metadata)};
        wasi_nn_tensor_t tensor = {dims, 1, U8, {0, 0, 0}, (const uint8_t *)metadata, dims[0]};
        err = wasi_nn_set_input(ctx, 1, &tensor);
        if (err) return fail("set_input 1 (metadata)", err);
    }

    uint32_t wav_size;
    uint8_t *wav = read_file(audio_path, &wav_size);
    if (!wav) return 1;
    /* WasmEdge's example declares the WAV bytes as f32 [1, byte length]. */
    uint32_t dims[2] = {1, wav_size};
    wasi_nn_tensor_t tensor = {dims, 2, F32, {0, 0, 0}, wav, wav_size};
    err = wasi_nn_set_input(ctx, 0, &tensor);
    free(wav);
    if (err) return fail("set_input 0 (audio)", err);

    err = wasi_nn_compute(ctx);
    if (err) return fail("compute", err);

    uint8_t *text = malloc(OUTPUT_MAX);
    uint32_t written = 0;
    if (!text) return 1;
    err = wasi_nn_get_output(ctx, 0, text, OUTPUT_MAX, &written);
    if (err) return fail("get_output", err);
    fwrite(text, 1, written, stdout);
    free(text);
    return 0;
}
