/* fusec compile MODEL.json -o libNAME.so: a shared library built by gcc. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "../ir/mapguard.h"
#include "../ir/safetensors_write.h"

const char help_compile[] =
    "usage: fusec compile MODEL.json -o libNAME.so [options]\n"
    "\n"
    "Runs the pass pipeline, emits C and builds it with gcc -O3 -march=native into a\n"
    "shared library linked against libfusec_rt.so. Load it with fusec_load() or\n"
    "`fusec run libNAME.so`.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE.so        the library to write (required; replaced atomically)\n"
    "  --header FILE.h             also write a C header declaring the entry point\n"
    "                              (default: NAME.h next to libNAME.so)\n"
    "  --specialize NAME=VALUE     compile input NAME in with this value (FILE.npy or a JSON\n"
    "                              array), for an input whose values decide shapes (a Reshape\n"
    "                              target, Slice bounds...): the library no longer takes it\n"
    "  --embed-weights             put the weights in the library: one self-contained file to\n"
    "                              ship (meant for small models; the library grows by their size)\n"
    "  --emit-c FILE.c             also write the generated C\n"
    MODEL_OPTIONS_HELP
    "  -h, --help                  this text\n";


/* lib<NAME>.so -> <NAME>.h in the same directory; other.so -> other.h */
static char *default_header_path(const char *so_path) {
    size_t n = strlen(so_path);
    char *h = malloc(n + 3);
    if (!h) return NULL;
    const char *base = strrchr(so_path, '/');
    base = base ? base + 1 : so_path;
    size_t dir_len = (size_t)(base - so_path);
    size_t base_len = strlen(base) - 3;   /* without ".so" */
    if (base_len > 3 && strncmp(base, "lib", 3) == 0) base += 3, base_len -= 3;
    snprintf(h, n + 3, "%.*s%.*s.h", (int)dir_len, so_path, (int)base_len, base);
    return h;
}

int cmd_compile(int argc, char **argv) {
    const char *model = NULL, *so_path = NULL, *header = NULL, *emit_c = NULL, *value;
    model_opts mo;
    model_opts_init(&mo);
    int embed = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_compile, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            so_path = value;
        } else if ((r = option_value(argc, argv, &i, "--header", NULL, &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            header = value;
        } else if ((r = option_value(argc, argv, &i, "--emit-c", NULL, &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            emit_c = value;
        } else if (strcmp(argv[i], "--embed-weights") == 0) {
            embed = 1;
        } else if ((r = model_option("compile", argc, argv, &i, &mo, 1))) {
            if (r < 0) return EXIT_USAGE;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("compile", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("compile", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("compile", "no model given");
    if (!so_path) return usage("compile", "no output library given (-o libNAME.so)");
    size_t so_len = strlen(so_path);
    if (so_len < 4 || strcmp(so_path + so_len - 3, ".so") != 0 || so_path[so_len - 4] == '/')
        return usage("compile", "the output library must be named NAME.so, got '%s'", so_path);

    char *default_header = header ? NULL : default_header_path(so_path);
    if (!header) header = default_header;
    known_inputs known = {0};
    fu_compile_result r = {0};
    int status = EXIT_USER;
    if (known_inputs_read(mo.specialize, mo.n_specialize, 0, &known) != 0) goto done;
    fu_compile_opts copts = model_compile_opts(&mo, FU_TARGET_C);
    copts.known = known.known;
    copts.n_known = known.n;
    copts.specialize_always = 1;
    if (compile_model(model, &copts, &r) != 0) goto done;
    if (emit_c && write_text_atomic(emit_c, r.c_source.s) != 0) {
        fail(EXIT_USER, "cannot write %s: %s", emit_c, strerror(errno));
        goto done;
    }
    fu_err err = {0};
    if (embed) {
        /* The image gas includes: the weights the code reads, as safetensors,
         * in a private temp folder (a plain name for the .incbin). */
        char dir[] = "/tmp/fusec-embed-XXXXXX", image[64];
        if (!mkdtemp(dir)) {
            fail(EXIT_USER, "cannot create a temp folder: %s", strerror(errno));
            goto done;
        }
        snprintf(image, sizeof image, "%s/weights.safetensors", dir);
        fu_mapguard_enter();
        int bad = fu_safetensors_write_code_weights(r.graph, image, &err) ||
                  fu_aot_build_embedded(r.c_source.s, so_path, header, image, &err);
        fu_mapguard_leave();
        unlink(image);
        rmdir(dir);
        if (bad) {
            fail(EXIT_USER, "%s: %s", model, err.msg);
            goto done;
        }
    } else if (fu_aot_build(r.c_source.s, so_path, header, &err) != 0) {
        fail(EXIT_USER, "%s: %s", model, err.msg);
        goto done;
    }
    printf("%s: wrote %s and %s (arena %lld bytes)\n", model, so_path, header, (long long)r.graph->arena_bytes);
    status = EXIT_OK;
done:
    known_inputs_free(&known);
    fu_compile_result_free(&r);
    free(default_header);
    return status;
}
