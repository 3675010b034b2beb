/*
 * nn-run: a generic wasi-nn command-line guest used by the wasinn tests.
 *
 * It loads one graph (from files, or by name), makes one or more execution
 * contexts, and for each context runs set_input(s) + compute + get_output(s)
 * one or more times.  Every wasi-nn errno is reported as
 *     nn-run: <operation> failed: errno <n>
 * on stderr and the process exits with status 64 + errno.
 *
 * See guests/README.md for the argument syntax.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wasi_nn.h"

#define DEFAULT_OUTPUT_MAX (64u * 1024u * 1024u)

static const char usage_text[] =
    "usage: nn-run LOAD [OPTION...]\n"
    "LOAD (exactly one):\n"
    "  --load ENC TARGET FILE[,FILE...]   load() with the files as builders\n"
    "  --load-by-name NAME                load_by_name()\n"
    "  --load-by-name-config NAME JSON    load_by_name_with_config()\n"
    "OPTIONS:\n"
    "  --input INDEX TYPE DIMS FILE       set_input(); DIMS like 1x3x224x224\n"
    "                                     (empty string = rank 0)\n"
    "  --output INDEX FILE [MAXBYTES]     get_output() into FILE\n"
    "                                     (default MAXBYTES 67108864)\n"
    "  --print-output INDEX TYPE          get_output() and print the values\n"
    "  --repeat N                         runs per context (default 1)\n"
    "  --contexts N                       execution contexts (default 1)\n"
    "  --unload                           finalize contexts, unload graph\n"
    "ENC, TARGET, TYPE are the integer wasi-nn enum values.\n";

/* ---- small helpers -------------------------------------------------------- */

static void usage_error(const char *fmt, const char *arg)
{
    fputs("nn-run: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    exit(2);
}

static void check_nn(const char *operation, wasi_nn_errno_t err)
{
    if (err == WASI_NN_ERRNO_SUCCESS)
        return;
    fprintf(stderr, "nn-run: %s failed: errno %" PRIu32 "\n", operation, err);
    fflush(stdout);
    exit(err <= 191u ? (int)(64u + err) : 255);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "nn-run: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n ? n : 1);
    if (!p) {
        fprintf(stderr, "nn-run: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Parse a decimal u32; returns 0 on success. */
static int parse_u32(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10u + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static uint32_t arg_u32(const char *what, const char *s)
{
    uint32_t v;
    if (parse_u32(s, &v) != 0) {
        fprintf(stderr, "nn-run: %s: not an unsigned 32-bit integer: '%s'\n", what, s);
        fputs(usage_text, stderr);
        exit(2);
    }
    return v;
}

/* Read a whole file into a fresh buffer. */
static uint8_t *read_file(const char *path, uint32_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "nn-run: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 0, len = 0;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0)
        cap = (size_t)st.st_size + 1; /* +1 so EOF is seen without growing */
    if (cap < 4096)
        cap = 4096;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                fprintf(stderr, "nn-run: %s: file too large\n", path);
                exit(1);
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                fprintf(stderr, "nn-run: cannot read %s: %s\n", path, strerror(errno));
                exit(1);
            }
            break;
        }
    }
    fclose(f);
    if (len > UINT32_MAX) {
        fprintf(stderr, "nn-run: %s: file too large\n", path);
        exit(1);
    }
    *len_out = (uint32_t)len;
    return buf;
}

static void write_file(const char *path, const uint8_t *data, uint32_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "nn-run: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if ((len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "nn-run: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* ---- the plan built from argv -------------------------------------------- */

enum load_kind { LOAD_NONE, LOAD_FILES, LOAD_BY_NAME, LOAD_BY_NAME_CONFIG };

struct input_spec {
    uint32_t index;
    uint32_t type;
    uint32_t *dims;
    uint32_t dims_len;
    const char *path;
    uint8_t *data;
    uint32_t data_len;
};

struct output_spec {
    uint32_t index;
    const char *path;       /* file to write, or NULL */
    int print_type;         /* tensor type to print, or -1 */
    uint32_t max_bytes;
};

struct plan {
    enum load_kind load;
    uint32_t encoding, target;
    char *files_arg;        /* --load FILE[,FILE...] (mutable copy) */
    const char *name;
    const char *config;
    struct input_spec *inputs;
    size_t n_inputs;
    struct output_spec *outputs;
    size_t n_outputs;
    uint32_t repeat;
    uint32_t contexts;
    int unload;
};

static void parse_dims(const char *s, struct input_spec *in)
{
    size_t count = 0, cap = 4;
    uint32_t *dims = xmalloc(cap * sizeof *dims);
    if (*s != '\0') {
        const char *p = s;
        for (;;) {
            const char *end = strchr(p, 'x');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            char tmp[16];
            uint32_t v;
            if (n == 0 || n >= sizeof tmp)
                usage_error("bad DIMS '%s'", s);
            memcpy(tmp, p, n);
            tmp[n] = '\0';
            if (parse_u32(tmp, &v) != 0)
                usage_error("bad DIMS '%s'", s);
            if (count == cap) {
                cap *= 2;
                dims = xrealloc(dims, cap * sizeof *dims);
            }
            dims[count++] = v;
            if (!end)
                break;
            p = end + 1;
        }
    }
    in->dims = dims;
    in->dims_len = (uint32_t)count;
}

static void need(int argc, int i, int n, const char *opt)
{
    if (i + n >= argc)
        usage_error("%s: missing argument(s)", opt);
}

static void parse_args(int argc, char **argv, struct plan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->repeat = 1;
    pl->contexts = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--load") == 0 || strcmp(a, "--load-by-name") == 0 ||
            strcmp(a, "--load-by-name-config") == 0) {
            if (pl->load != LOAD_NONE)
                usage_error("%s: only one load option may be given", a);
            if (strcmp(a, "--load") == 0) {
                need(argc, i, 3, a);
                pl->load = LOAD_FILES;
                pl->encoding = arg_u32("ENC", argv[i + 1]);
                pl->target = arg_u32("TARGET", argv[i + 2]);
                pl->files_arg = argv[i + 3];
                i += 3;
            } else if (strcmp(a, "--load-by-name") == 0) {
                need(argc, i, 1, a);
                pl->load = LOAD_BY_NAME;
                pl->name = argv[++i];
            } else {
                need(argc, i, 2, a);
                pl->load = LOAD_BY_NAME_CONFIG;
                pl->name = argv[i + 1];
                pl->config = argv[i + 2];
                i += 2;
            }
        } else if (strcmp(a, "--input") == 0) {
            need(argc, i, 4, a);
            pl->inputs = xrealloc(pl->inputs, (pl->n_inputs + 1) * sizeof *pl->inputs);
            struct input_spec *in = &pl->inputs[pl->n_inputs++];
            memset(in, 0, sizeof *in);
            in->index = arg_u32("INDEX", argv[i + 1]);
            in->type = arg_u32("TYPE", argv[i + 2]);
            if (in->type > 255)
                usage_error("TYPE out of range: '%s'", argv[i + 2]);
            parse_dims(argv[i + 3], in);
            in->path = argv[i + 4];
            i += 4;
        } else if (strcmp(a, "--output") == 0 || strcmp(a, "--print-output") == 0) {
            int is_print = strcmp(a, "--print-output") == 0;
            need(argc, i, 2, a);
            pl->outputs = xrealloc(pl->outputs, (pl->n_outputs + 1) * sizeof *pl->outputs);
            struct output_spec *out = &pl->outputs[pl->n_outputs++];
            out->index = arg_u32("INDEX", argv[i + 1]);
            out->max_bytes = DEFAULT_OUTPUT_MAX;
            if (is_print) {
                uint32_t t = arg_u32("TYPE", argv[i + 2]);
                if (t > WASI_NN_TYPE_I64)
                    usage_error("--print-output: unknown TYPE '%s'", argv[i + 2]);
                out->path = NULL;
                out->print_type = (int)t;
                i += 2;
            } else {
                out->path = argv[i + 2];
                out->print_type = -1;
                i += 2;
                /* optional MAXBYTES: a plain number that is not an option */
                if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
                    out->max_bytes = arg_u32("MAXBYTES", argv[i + 1]);
                    i += 1;
                }
            }
        } else if (strcmp(a, "--repeat") == 0) {
            need(argc, i, 1, a);
            pl->repeat = arg_u32("--repeat N", argv[++i]);
        } else if (strcmp(a, "--contexts") == 0) {
            need(argc, i, 1, a);
            pl->contexts = arg_u32("--contexts N", argv[++i]);
        } else if (strcmp(a, "--unload") == 0) {
            pl->unload = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else {
            usage_error("unknown argument '%s'", a);
        }
    }
    if (pl->load == LOAD_NONE)
        usage_error("%s", "no load option given");
}

/* ---- output printing -------------------------------------------------------- */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void print_values(const uint8_t *buf, uint32_t len, int type)
{
    static const uint32_t elem_size[] = {2, 4, 8, 1, 4, 8};
    uint32_t es = elem_size[type];
    uint32_t n = len / es;
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *p = buf + (size_t)k * es;
        if (k)
            putchar(' ');
        switch (type) {
        case WASI_NN_TYPE_F16: {
            uint16_t h;
            memcpy(&h, p, 2);
            printf("%.9g", (double)half_to_float(h));
            break;
        }
        case WASI_NN_TYPE_F32: {
            float f;
            memcpy(&f, p, 4);
            printf("%.9g", (double)f);
            break;
        }
        case WASI_NN_TYPE_F64: {
            double d;
            memcpy(&d, p, 8);
            printf("%.17g", d);
            break;
        }
        case WASI_NN_TYPE_U8:
            printf("%u", (unsigned)*p);
            break;
        case WASI_NN_TYPE_I32: {
            int32_t v;
            memcpy(&v, p, 4);
            printf("%" PRId32, v);
            break;
        }
        default: {
            int64_t v;
            memcpy(&v, p, 8);
            printf("%" PRId64, v);
            break;
        }
        }
    }
    putchar('\n');
    if (len % es)
        fprintf(stderr, "nn-run: output has %" PRIu32 " trailing byte(s) not printed\n",
                len % es);
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct plan pl;
    parse_args(argc, argv, &pl);

    /* Read all input files up front. */
    for (size_t k = 0; k < pl.n_inputs; k++)
        pl.inputs[k].data = read_file(pl.inputs[k].path, &pl.inputs[k].data_len);

    /* Load the graph. */
    wasi_nn_graph_t graph = 0;
    if (pl.load == LOAD_FILES) {
        size_t n = 1;
        for (const char *p = pl.files_arg; *p; p++)
            n += (*p == ',');
        wasi_nn_graph_builder_t *builders = xmalloc(n * sizeof *builders);
        size_t count = 0;
        char *save = pl.files_arg;
        for (;;) {
            char *comma = strchr(save, ',');
            if (comma)
                *comma = '\0';
            if (*save == '\0')
                usage_error("%s", "--load: empty file name in FILE list");
            uint32_t len;
            builders[count].buf = read_file(save, &len);
            builders[count].size = len;
            count++;
            if (!comma)
                break;
            save = comma + 1;
        }
        check_nn("load", wasi_nn_load(builders, (uint32_t)count, pl.encoding, pl.target,
                                      &graph));
    } else if (pl.load == LOAD_BY_NAME) {
        check_nn("load_by_name",
                 wasi_nn_load_by_name(pl.name, (uint32_t)strlen(pl.name), &graph));
    } else {
        check_nn("load_by_name_with_config",
                 wasi_nn_load_by_name_with_config(pl.name, (uint32_t)strlen(pl.name),
                                                  pl.config, (uint32_t)strlen(pl.config),
                                                  &graph));
    }

    /* Make all contexts first, then run each. */
    wasi_nn_exec_ctx_t *ctxs = xmalloc((size_t)pl.contexts * sizeof *ctxs);
    for (uint32_t c = 0; c < pl.contexts; c++)
        check_nn("init_execution_context", wasi_nn_init_execution_context(graph, &ctxs[c]));

    uint8_t *out_buf = NULL;      /* allocated on first get_output */
    uint32_t out_cap = 0;
    for (uint32_t c = 0; c < pl.contexts; c++) {
        for (uint32_t r = 0; r < pl.repeat; r++) {
            for (size_t k = 0; k < pl.n_inputs; k++) {
                const struct input_spec *in = &pl.inputs[k];
                wasi_nn_tensor_t t;
                memset(&t, 0, sizeof t);
                t.dims = in->dims;
                t.dims_len = in->dims_len;
                t.type = (wasi_nn_tensor_type_t)in->type;
                t.data = in->data;
                t.data_len = in->data_len;
                check_nn("set_input", wasi_nn_set_input(ctxs[c], in->index, &t));
            }
            check_nn("compute", wasi_nn_compute(ctxs[c]));
            for (size_t k = 0; k < pl.n_outputs; k++) {
                const struct output_spec *out = &pl.outputs[k];
                if (out->max_bytes > out_cap) {
                    free(out_buf);
                    out_buf = xmalloc(out->max_bytes);
                    out_cap = out->max_bytes;
                }
                uint32_t written = 0;
                check_nn("get_output", wasi_nn_get_output(ctxs[c], out->index, out_buf,
                                                          out->max_bytes, &written));
                if (written > out->max_bytes) {
                    fprintf(stderr,
                            "nn-run: get_output reported %" PRIu32
                            " bytes written into a %" PRIu32 "-byte buffer\n",
                            written, out->max_bytes);
                    return 1;
                }
                if (out->path)
                    write_file(out->path, out_buf, written);
                if (out->print_type >= 0)
                    print_values(out_buf, written, out->print_type);
            }
        }
    }

    if (pl.unload) {
        for (uint32_t c = 0; c < pl.contexts; c++)
            check_nn("finalize_execution_context", wasi_nn_finalize_execution_context(ctxs[c]));
        check_nn("unload", wasi_nn_unload(graph));
    }
    fflush(stdout);
    return 0;
}
