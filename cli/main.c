/* fusec: the command-line driver (one file per command in cli/).
 *
 *   fusec compile MODEL.json -o libNAME.so     build a shared library (gcc)
 *   fusec run MODEL.json|LIB.so --input ...     run a model, print outputs
 *   fusec dump MODEL.json [--after PASS]        the graph after some pass
 *   fusec info MODEL.json                       summary of the planned graph
 *   fusec import MODEL.onnx -o OUT.json         ONNX -> JSON IR + OUT.safetensors
 *   fusec export MODEL.json -o OUT.onnx         the (fused) graph as ONNX
 *
 * Exit status: 0 success, 1 user error (bad model, input, failed build),
 * 2 usage error. Every message goes to stderr as "fusec: ...". */
#include <string.h>
#include "cli.h"
#include "../compiler/progress.h"
#include "../api/fusec.h"

/* The release (FUSEC_VERSION, api/fusec.h), and the build's id (a hash of
 * the library's sources: the same id means the same compiler and runtime). */
extern const char fu_build_id[];

static const char help_main[] =
    "usage: fusec <command> [options]\n"
    "\n"
    "fusec compiles neural-network models given as JSON IR into C and runs them.\n"
    "\n"
    "commands:\n"
    "  compile MODEL.json -o libNAME.so   build a shared library with gcc\n"
    "  run MODEL.json|LIB.so --input ...   run a model on inputs and print its outputs\n"
    "  dump MODEL.json                     write the graph (JSON IR or dot) after a pass\n"
    "  info MODEL.json                     op counts, parameters, shapes, arena size\n"
    "  import MODEL.onnx -o OUT.json       an ONNX model as JSON IR + OUT.safetensors\n"
    "  export MODEL -o OUT.onnx            the graph after a pass (fused) as ONNX\n"
    "  help [COMMAND]                      this text, or a command's options\n"
    "\n"
    "Run `fusec COMMAND --help` for the options of a command; `fusec --version` for the version.\n"
    "Exit status: 0 success, 1 bad model / input / failed build, 2 usage error.\n";


typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"compile", cmd_compile, help_compile},
    {"run", cmd_run, help_run},
    {"dump", cmd_dump, help_dump},
    {"info", cmd_info, help_info},
    {"import", cmd_import, help_import},
    {"export", cmd_export, help_export},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int main(int argc, char **argv) {
    fu_progress_enable(1);   /* slow steps (a gcc build, packing weights) say so on stderr */
    if (argc < 2) {
        fputs(help_main, stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (is_help(name)) {
        fputs(help_main, stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("fusec %s (build %s)\n", FUSEC_VERSION, fu_build_id);
        return EXIT_OK;
    }
    if (strcmp(name, "help") == 0) {
        if (argc < 3 || is_help(argv[2])) {
            fputs(help_main, stdout);
            return EXIT_OK;
        }
        for (int c = 0; c < N_COMMANDS; c++)
            if (strcmp(argv[2], commands[c].name) == 0) {
                fputs(commands[c].help, stdout);
                return EXIT_OK;
            }
        return usage(NULL, "unknown command '%s'", argv[2]);
    }
    for (int c = 0; c < N_COMMANDS; c++)
        if (strcmp(name, commands[c].name) == 0) return commands[c].run(argc - 2, argv + 2);
    return usage(NULL, "unknown command '%s'", name);
}

