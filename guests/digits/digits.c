/*
 * digits: wasi-nn demo guest that classifies 8x8 handwritten digits.
 *
 * Reads every *.pgm file (binary PGM, 8x8, maxval 16, named NNNN-L.pgm where
 * L is the true label) from a directory, runs each through a model with
 * input f32[1,64] (pixel / maxval) and output f32[1,10], and prints the
 * argmax, the label and a summary.  See guests/README.md for the options.
 *
 * Only the six standard wasi_ephemeral_nn functions are imported, so the
 * module also runs on hosts without the WasmEdge extensions.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wasi_nn.h"

#define NPIX 64
#define NCLASSES 10

static const char usage_text[] =
    "usage: digits [--images DIR] [--model-name NAME]\n"
    "              [--model-file PATH[,PATH...] --encoding N [--target N]] [--quiet]\n"
    "  --images DIR          directory with NNNN-L.pgm files (default /images)\n"
    "  --model-name NAME     load_by_name(NAME) (default: digits)\n"
    "  --model-file PATHS    read the model file(s) and call load() instead\n"
    "                        (OpenVINO IR: xml,bin)\n"
    "  --encoding N          graph encoding for --model-file (0 openvino, 1 onnx, ...)\n"
    "  --target N            execution target for --model-file (default 0 = cpu)\n"
    "  --quiet               print only the summary line\n";

static void usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "digits: %s%s\n", msg, arg ? arg : "");
    fputs(usage_text, stderr);
    exit(2);
}

static void check_nn(const char *operation, wasi_nn_errno_t err)
{
    if (err == WASI_NN_ERRNO_SUCCESS)
        return;
    fflush(stdout);
    fprintf(stderr, "digits: %s failed: errno %" PRIu32 "\n", operation, err);
    exit(err <= 191u ? (int)(64u + err) : 255);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "digits: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint32_t arg_u32(const char *what, const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v > UINT32_MAX)
        usage_error(what, s);
    return (uint32_t)v;
}

/* Read a whole file; exits on error. */
static uint8_t *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "digits: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                fprintf(stderr, "digits: out of memory reading %s\n", path);
                exit(1);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "digits: cannot read %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fclose(f);
    *len_out = len;
    return buf;
}

/* ---- PGM parsing ------------------------------------------------------------ */

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skip whitespace and '#' comments (to end of line). */
static void skip_ws(const uint8_t *b, size_t len, size_t *pos)
{
    while (*pos < len) {
        if (is_space(b[*pos])) {
            (*pos)++;
        } else if (b[*pos] == '#') {
            while (*pos < len && b[*pos] != '\n' && b[*pos] != '\r')
                (*pos)++;
        } else {
            break;
        }
    }
}

static int read_uint(const uint8_t *b, size_t len, size_t *pos, unsigned *out)
{
    unsigned long v = 0;
    size_t start;
    skip_ws(b, len, pos);
    start = *pos;
    while (*pos < len && b[*pos] >= '0' && b[*pos] <= '9') {
        v = v * 10 + (unsigned long)(b[*pos] - '0');
        if (v > 65535)
            return -1;
        (*pos)++;
    }
    if (*pos == start)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Parse a binary 8x8 PGM into pixels scaled to [0, 1] (value / maxval).
 * Returns NULL on success or a description of the problem. */
static const char *parse_pgm(const uint8_t *b, size_t len, float pixels[NPIX])
{
    size_t pos = 2;
    unsigned w, h, maxval;
    if (len < 2 || b[0] != 'P' || b[1] != '5')
        return "not a binary PGM (P5)";
    if (read_uint(b, len, &pos, &w) || read_uint(b, len, &pos, &h) ||
        read_uint(b, len, &pos, &maxval))
        return "bad PGM header";
    if (w != 8 || h != 8)
        return "image is not 8x8";
    if (maxval == 0 || maxval > 255)
        return "unsupported maxval (must be 1..255)";
    /* exactly one whitespace byte separates the header from the raster */
    if (pos >= len || !is_space(b[pos]))
        return "bad PGM header";
    pos++;
    if (len - pos < NPIX)
        return "truncated pixel data";
    for (int i = 0; i < NPIX; i++) {
        unsigned v = b[pos + (size_t)i];
        if (v > maxval)
            v = maxval;
        pixels[i] = (float)v / (float)maxval;
    }
    return NULL;
}

/* Label from a name like "0001-7.pgm": the digit between the last '-' and
 * ".pgm".  Returns -1 when there is none. */
static int label_from_name(const char *name)
{
    const char *dash = strrchr(name, '-');
    size_t n = strlen(name);
    if (!dash || n < 4)
        return -1;
    const char *dot = name + n - 4; /* ".pgm" */
    if (dot - dash != 2 || dash[1] < '0' || dash[1] > '9')
        return -1;
    return dash[1] - '0';
}

static int has_pgm_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".pgm") == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *images_dir = "/images";
    const char *model_name = "digits";
    char *model_files = NULL;
    int have_encoding = 0;
    uint32_t encoding = 0, target = WASI_NN_TARGET_CPU;
    int quiet = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--images") == 0 && has_val) {
            images_dir = argv[++i];
        } else if (strcmp(a, "--model-name") == 0 && has_val) {
            model_name = argv[++i];
        } else if (strcmp(a, "--model-file") == 0 && has_val) {
            model_files = argv[++i];
        } else if (strcmp(a, "--encoding") == 0 && has_val) {
            encoding = arg_u32("bad --encoding value: ", argv[++i]);
            have_encoding = 1;
        } else if (strcmp(a, "--target") == 0 && has_val) {
            target = arg_u32("bad --target value: ", argv[++i]);
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            usage_error("unknown or incomplete argument: ", a);
        }
    }
    if (model_files && !have_encoding)
        usage_error("--model-file needs --encoding", NULL);

    /* Collect and sort the image names. */
    DIR *dir = opendir(images_dir);
    if (!dir) {
        fprintf(stderr, "digits: cannot open directory %s: %s\n", images_dir, strerror(errno));
        return 1;
    }
    size_t n_names = 0, cap_names = 64;
    char **names = xmalloc(cap_names * sizeof *names);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (!has_pgm_suffix(de->d_name))
            continue;
        if (n_names == cap_names) {
            cap_names *= 2;
            char **nn = realloc(names, cap_names * sizeof *names);
            if (!nn) {
                fputs("digits: out of memory\n", stderr);
                return 1;
            }
            names = nn;
        }
        names[n_names] = xmalloc(strlen(de->d_name) + 1);
        strcpy(names[n_names], de->d_name);
        n_names++;
    }
    closedir(dir);
    if (n_names == 0) {
        fprintf(stderr, "digits: no *.pgm images found in %s\n", images_dir);
        return 1;
    }
    qsort(names, n_names, sizeof *names, cmp_names);

    /* Acquire the model. */
    wasi_nn_graph_t graph = 0;
    if (model_files) {
        size_t n = 1;
        for (const char *p = model_files; *p; p++)
            n += (*p == ',');
        wasi_nn_graph_builder_t *builders = xmalloc(n * sizeof *builders);
        size_t count = 0;
        char *p = model_files;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            size_t len;
            builders[count].buf = read_file(p, &len);
            if (len > UINT32_MAX) {
                fprintf(stderr, "digits: %s: file too large\n", p);
                return 1;
            }
            builders[count].size = (uint32_t)len;
            count++;
            if (!comma)
                break;
            p = comma + 1;
        }
        check_nn("load", wasi_nn_load(builders, (uint32_t)count, encoding, target, &graph));
    } else {
        check_nn("load_by_name",
                 wasi_nn_load_by_name(model_name, (uint32_t)strlen(model_name), &graph));
    }

    wasi_nn_exec_ctx_t ctx = 0;
    check_nn("init_execution_context", wasi_nn_init_execution_context(graph, &ctx));

    static const uint32_t in_dims[2] = {1, NPIX};
    size_t path_cap = strlen(images_dir) + 2;
    size_t labeled = 0, correct = 0;
    double total_ms = 0.0;
    for (size_t k = 0; k < n_names; k++) {
        const char *name = names[k];
        char *path = xmalloc(path_cap + strlen(name));
        sprintf(path, "%s/%s", images_dir, name);
        size_t len;
        uint8_t *raw = read_file(path, &len);
        float pixels[NPIX];
        const char *problem = parse_pgm(raw, len, pixels);
        if (problem) {
            fflush(stdout);
            fprintf(stderr, "digits: %s: %s\n", path, problem);
            return 1;
        }
        free(raw);
        free(path);

        wasi_nn_tensor_t t;
        memset(&t, 0, sizeof t);
        t.dims = in_dims;
        t.dims_len = 2;
        t.type = WASI_NN_TYPE_F32;
        t.data = (const uint8_t *)pixels;
        t.data_len = (uint32_t)sizeof pixels;

        float scores[NCLASSES];
        uint32_t written = 0;
        double t0 = now_ms();
        check_nn("set_input", wasi_nn_set_input(ctx, 0, &t));
        check_nn("compute", wasi_nn_compute(ctx));
        check_nn("get_output", wasi_nn_get_output(ctx, 0, (uint8_t *)scores,
                                                  (uint32_t)sizeof scores, &written));
        total_ms += now_ms() - t0;
        if (written != sizeof scores) {
            fflush(stdout);
            fprintf(stderr, "digits: get_output returned %" PRIu32 " bytes, expected %zu\n",
                    written, sizeof scores);
            return 1;
        }

        int pred = 0;
        for (int c = 1; c < NCLASSES; c++)
            if (scores[c] > scores[pred])
                pred = c;
        int label = label_from_name(name);
        if (label >= 0) {
            labeled++;
            correct += (pred == label);
        }
        if (!quiet) {
            if (label >= 0)
                printf("%s  predicted %d  label %d  %s\n", name, pred, label,
                       pred == label ? "ok" : "WRONG");
            else
                printf("%s  predicted %d  label ?\n", name, pred);
        }
    }

    printf("images: %zu  correct: %zu/%zu  accuracy: ", n_names, correct, labeled);
    if (labeled)
        printf("%.2f%%", 100.0 * (double)correct / (double)labeled);
    else
        printf("n/a");
    printf("  mean time: %.3f ms/image\n", total_ms / (double)n_names);
    return 0;
}
