/* A byte-level BPE tokenizer reading a Hugging Face tokenizer.json (the
 * shape Qwen2/Qwen3 use): added/special tokens matched first (leftmost,
 * longest), an NFC normalizer (utf8proc), a Split pre-tokenizer with the
 * file's own regex (PCRE2, UTF + Unicode properties, JIT), the ByteLevel
 * byte-to-character mapping, and BPE by merge rank with a priority queue
 * over a linked list of symbols (O(n log n) in a word's length).
 *
 * Input must be valid UTF-8: invalid bytes are refused with their offset
 * (Hugging Face's tokenizers take Rust strings, so they cannot see invalid
 * UTF-8 either). Decoding gives the bytes the tokens stand for; a sequence
 * of ids cut inside a character gives incomplete UTF-8, as is.
 *
 * No function exits or aborts: errors return -1 (or NULL) with a message in
 * err naming the file and the reason. A loaded tokenizer is read-only, so
 * one may be shared between threads. */
#ifndef FUSEC_TOKENIZER_H
#define FUSEC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fu_tokenizer fu_tokenizer;

/* Loads tokenizer.json; NULL on error, with the reason in err. */
fu_tokenizer *fu_tokenizer_load(const char *path, char *err, size_t err_size);
void fu_tokenizer_free(fu_tokenizer *t);

/* Encodes len bytes of UTF-8 text. On success *ids (malloc'd, free it) holds
 * *n_ids token ids and 0 is returned; -1 on error with the reason in err. */
int fu_tokenizer_encode(const fu_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids,
                        char *err, size_t err_size);

/* Decodes ids to bytes: *text (malloc'd, NUL-terminated, free it) of *len
 * bytes. skip_special drops special added tokens. -1 on an unknown id. */
int fu_tokenizer_decode(const fu_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                        size_t *len, char *err, size_t err_size);

/* The number of ids (largest id + 1), and an id's bytes (NULL if unused). */
int32_t fu_tokenizer_vocab_size(const fu_tokenizer *t);
const char *fu_tokenizer_token(const fu_tokenizer *t, int32_t id, size_t *len);

/* Checks UTF-8; returns -1 and the offset of the first bad byte if invalid. */
int fu_utf8_check(const char *text, size_t len, size_t *bad_offset);

#endif
