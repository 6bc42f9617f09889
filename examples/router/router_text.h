/* The router's text commands (examples/router/router_text.c): tokenize,
 * detokenize and route, beside `router eval` (examples/router/router.c). */
#ifndef ROUTER_TEXT_H
#define ROUTER_TEXT_H

int tokenize_main(int argc, char **argv);
int detokenize_main(int argc, char **argv);
int route_main(int argc, char **argv);

/* From router.c: the repository root, and a config's model (generated under
 * build/router-models/CONFIG/ when missing, and with want_batch its
 * model_batch.json too; NULL if that fails). Malloc'd. */
char *router_root(void);
char *router_model_path(const char *root, const char *config, int want_batch);

#endif
