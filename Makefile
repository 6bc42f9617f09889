# fusec build. `make` builds everything (installing missing Debian packages
# first), `make test` runs every test, `make bench` prints speed figures.
.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD   := build
DEB_PKGS := gcc make xxd libjson-c-dev libopenblas-dev libtcc-dev tcc libcmocka-dev libssl-dev \
            python3-numpy graphviz pkg-config
PY      := /usr/bin/python3

CC      := gcc
WARN    := -Wall -Wextra -Werror
CFLAGS  := -std=c11 $(WARN) -O2 -g -D_GNU_SOURCE -fPIC -I.
# Runtime kernels: vectorised for this machine.
RT_CFLAGS := -std=c11 $(WARN) -O3 -march=native -g -D_GNU_SOURCE -fPIC -I.
LIBS    := -ljson-c -ltcc -ldl -lcrypto -lm -lpthread
RT_DIR  := $(abspath $(BUILD))
RT_LINK := -L$(BUILD) -lfusec_rt -Wl,-rpath,$(RT_DIR)

LIB_SRC := $(wildcard ir/*.c ir/ops/*.c passes/*.c compiler/*.c) runtime/api.c
LIB_SRC := $(filter-out compiler/main.c,$(LIB_SRC))
RT_SRC  := $(filter-out runtime/api.c,$(wildcard runtime/*.c))
HDRS    := $(wildcard ir/*.h passes/*.h compiler/*.h runtime/*.h)

LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/kernels_header.o
RT_OBJ  := $(patsubst %.c,$(BUILD)/rtobj/%.o,$(RT_SRC))

TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
ASAN_TESTS := $(patsubst tests/%.c,$(BUILD)/asan/tests/%,$(TEST_SRC))

.PHONY: all deps test test-unit test-asan bench clean fixtures router run

all: $(BUILD)/.deps $(BUILD)/fusec

# Installs the Debian packages fusec needs when any is missing.
deps: $(BUILD)/.deps
$(BUILD)/.deps:
	@mkdir -p $(BUILD)
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } >$(BUILD)/apt.log 2>&1 \
	  || { cat $(BUILD)/apt.log; exit 1; }; fi
	@touch $@

# The kernels header is embedded into every generated translation unit.
$(BUILD)/kernels_header.c: runtime/fusec_kernels.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	@{ echo '/* generated from runtime/fusec_kernels.h */'; \
	   echo 'const char fu_kernels_header[] = {'; xxd -i < $<; echo ', 0x00};'; } > $@

$(BUILD)/obj/kernels_header.o: $(BUILD)/kernels_header.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@

$(BUILD)/rtobj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -c $< -o $@

$(BUILD)/libfusec_rt.so: $(RT_OBJ)
	$(CC) -shared -o $@ $^ -lopenblas -lm

$(BUILD)/libfusec.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fusec: compiler/main.c $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) compiler/main.c $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

# ---- tests --------------------------------------------------------------
$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -lcmocka -o $@

# Sanitizer build of the library and unit tests (kernels stay -O3 native).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
$(BUILD)/asan/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@
$(BUILD)/asan/libfusec.a: $(patsubst %.c,$(BUILD)/asan/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/kernels_header.o
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/asan/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/asan/libfusec.a $(BUILD)/libfusec_rt.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $< $(BUILD)/asan/libfusec.a $(RT_LINK) $(LIBS) -lcmocka -o $@

test: all $(TESTS) $(ASAN_TESTS) $(BUILD)/router
	@bash tests/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# ---- the router example (examples/router/README.md) ----------------------
$(BUILD)/router: examples/router/router.c runtime/fusec.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

router: $(BUILD)/router

# The main job: the router's prompt eval on the default configuration, all
# four lanes (generates the 2.4 GB qwen3-0.6b weights under build/ first).
run: all $(BUILD)/router
	$(BUILD)/router eval --config qwen3-0.6b

# ---- kernel benchmark: fused kernels vs their composed references --------
$(BUILD)/bench_kernels: bench/bench_kernels.c runtime/fused_ref.h runtime/fusec_kernels.h $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(RT_LINK) -lopenblas -lm -o $@

# Router speed and memory (bench/bench_router.c, docs/performance.md);
# generates the qwen3-0.6b float32 and bfloat16 models under build/ if missing.
$(BUILD)/bench_router: bench/bench_router.c runtime/fusec.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

# Kernels on 1 and 2 threads: where sharing across cores pays (bench/bench_parallel.c).
$(BUILD)/bench_parallel: bench/bench_parallel.c runtime/fusec.h runtime/fusec_kernels.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

bench: $(BUILD)/bench_kernels $(BUILD)/bench_parallel $(BUILD)/bench_router
	$(BUILD)/bench_kernels
	$(BUILD)/bench_parallel
	$(BUILD)/bench_router
