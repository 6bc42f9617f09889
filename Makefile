# fusec build. `make` builds everything (installing missing Debian packages
# first), `make test` runs every test, `make bench` prints speed figures.
.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD   := build
DEB_PKGS := gcc make xxd libjson-c-dev libopenblas-dev libtcc-dev tcc libcmocka-dev libssl-dev \
            python3-numpy python3-onnx graphviz pkg-config libxxhash-dev \
            clang-14 libclang-rt-14-dev valgrind
PY      := /usr/bin/python3

CC      := gcc
WARN    := -Wall -Wextra -Werror
CFLAGS  := -std=c11 $(WARN) -O2 -g -D_GNU_SOURCE -fPIC -I.
# Runtime kernels: built for any x86-64 (hot loops multi-versioned, see
# runtime/simd.h), multiply-adds contracted into FMAs where the CPU has
# them (-std=c11 alone turns contraction off); the GEMM micro-kernels
# (runtime/gemm_kernels.c) are compiled once per instruction set below and
# chosen at run time from the CPU (runtime/gemm.c).
RT_CFLAGS := -std=c11 $(WARN) -O3 -march=x86-64 -mtune=generic -ffp-contract=fast -g -D_GNU_SOURCE -fPIC -I.
GEMM_VARIANTS := avx512bf16 avx512 avx2 portable
GEMM_FLAGS_avx512bf16 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mavx512bf16
GEMM_FLAGS_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma
GEMM_FLAGS_avx2 := -mavx2 -mfma
GEMM_FLAGS_portable :=
LIBS    := -ljson-c -ltcc -ldl -lcrypto -lxxhash -lm -lpthread
RT_DIR  := $(abspath $(BUILD))
RT_LINK := -L$(BUILD) -lfusec_rt -Wl,-rpath,$(RT_DIR)

# Layers, each including only those below it: runtime/ (libfusec_rt: what
# generated code links against) <- ir/ <- ops/ <- passes/ <- compiler/ <-
# api/ (the public C API) <- cli/ (the fusec command).
LIB_SRC := $(wildcard ir/*.c ops/*.c passes/*.c compiler/*.c api/*.c)
RT_SRC  := $(filter-out runtime/gemm_kernels.c,$(wildcard runtime/*.c))
CLI_SRC := $(wildcard cli/*.c)
HDRS    := $(wildcard ir/*.h ops/*.h passes/*.h compiler/*.h api/*.h runtime/*.h)

GEN_OBJ := $(BUILD)/obj/kernels_header.o $(BUILD)/obj/jit_symbols.o $(BUILD)/obj/build_id.o
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(GEN_OBJ)
RT_OBJ  := $(patsubst %.c,$(BUILD)/rtobj/%.o,$(RT_SRC)) \
           $(foreach v,$(GEMM_VARIANTS),$(BUILD)/rtobj/runtime/gemm_kernels.$(v).o)

TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
ASAN_TESTS := $(patsubst tests/%.c,$(BUILD)/asan/tests/%,$(TEST_SRC))

.PHONY: all deps test test-unit test-asan bench clean fixtures router run fuzz fuzz-build

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

# The kernels header is embedded into every generated translation unit,
# after the numerics it includes (whose guard then skips that #include).
$(BUILD)/kernels_header.c: runtime/numerics.h runtime/fusec_kernels.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	@{ echo '/* generated from runtime/numerics.h and runtime/fusec_kernels.h */'; \
	   echo 'const char fu_kernels_header[] = {'; cat $^ | xxd -i; echo ', 0x00};'; } > $@

$(BUILD)/obj/kernels_header.o: $(BUILD)/kernels_header.c
	$(CC) $(CFLAGS) -c $< -o $@

# The JIT's symbol table (compiler/jit_symbols.h): every function the
# kernels header declares (a line starting with its return type, not static).
$(BUILD)/jit_symbols.c: runtime/fusec_kernels.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	@{ echo '/* generated from runtime/fusec_kernels.h by the Makefile */'; \
	   echo '#include "runtime/fusec_kernels.h"'; echo '#include "compiler/jit_symbols.h"'; \
	   echo 'const fu_jit_symbol fu_jit_symbols[] = {'; \
	   awk '/^[a-z]/ && !/^static/ { p = index($$0, "("); e = index($$0, "="); if (!p || (e && e < p)) next; \
	        n = split(substr($$0, 1, p - 1), w, /[^A-Za-z0-9_]+/); while (n > 0 && w[n] == "") n--; \
	        if (n > 0) printf "    {\"%s\", (const void *)%s},\n", w[n], w[n] }' $<; \
	   echo '};'; echo 'const int fu_jit_n_symbols = (int)(sizeof fu_jit_symbols / sizeof fu_jit_symbols[0]);'; } > $@

$(BUILD)/obj/jit_symbols.o: $(BUILD)/jit_symbols.c compiler/jit_symbols.h
	$(CC) $(CFLAGS) -c $< -o $@

# fusec's build identity: a hash of every source that decides generated
# code, part of the AOT cache key (compiler/aot.c).
$(BUILD)/build_id.c: $(LIB_SRC) $(RT_SRC) runtime/gemm_kernels.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	@echo "const char fu_build_id[] = \"$$(cat $^ | sha256sum | cut -c1-32)\";" > $@

$(BUILD)/obj/build_id.o: $(BUILD)/build_id.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@

$(BUILD)/rtobj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -c $< -o $@

$(BUILD)/rtobj/runtime/gemm_kernels.%.o: runtime/gemm_kernels.c runtime/gemm_kernels.h runtime/numerics.h | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) $(GEMM_FLAGS_$*) -c $< -o $@

$(BUILD)/libfusec_rt.so: $(RT_OBJ)
	$(CC) -shared -o $@ $^ -lopenblas -lm

$(BUILD)/libfusec.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fusec: $(CLI_SRC) $(wildcard cli/*.h) $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $(CLI_SRC) $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

# ---- tests --------------------------------------------------------------
$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -lcmocka -o $@

# Sanitizer build of the library and unit tests (kernels stay -O3 native).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
$(BUILD)/asan/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@
$(BUILD)/asan/libfusec.a: $(patsubst %.c,$(BUILD)/asan/obj/%.o,$(LIB_SRC)) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/asan/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/asan/libfusec.a $(BUILD)/libfusec_rt.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $< $(BUILD)/asan/libfusec.a $(RT_LINK) $(LIBS) -lcmocka -o $@

# ---- fuzzing (docs/security.md) ----------------------------------------
# libFuzzer targets (fuzz/fuzz_<target>.c) built with clang: the library
# sources again, with ASan, UBSan and libFuzzer's coverage, under
# build/fuzz/ (the generated sources and the runtime library are shared with
# the gcc build: the runtime's kernels are not what is fuzzed).
# `make fuzz` runs each target FUZZ_SECONDS (default 60) from its seeds
# (fuzz/corpus/<target>) with its dictionary (fuzz/<target>.dict), growing a
# working corpus under build/fuzz/corpus/, and prints execs and coverage.
FUZZ_CC      := clang-14
FUZZ_TARGETS := ir safetensors npy json_array compile
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -std=c11 $(WARN) -O1 -g -D_GNU_SOURCE -fPIC -I. -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
$(BUILD)/fuzz/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@
$(BUILD)/fuzz/libfusec.a: $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(LIB_SRC)) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(BUILD)/fuzz/libfusec.a $(BUILD)/libfusec_rt.so
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(BUILD)/fuzz/libfusec.a $(RT_LINK) $(LIBS) -o $@

fuzz-build: $(BUILD)/.deps $(FUZZ_BINS)

fuzz: fuzz-build
	@st=0; for t in $(FUZZ_TARGETS); do bash fuzz/run.sh $(BUILD) $$t $(FUZZ_SECONDS) || st=1; done; exit $$st

# ThreadSanitizer build of the library (gcc) and its test
# (tests/tsan/tsan_threads.c, run by tests/cli/test_tsan.sh).
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
$(BUILD)/tsan/obj/%.o: %.c $(HDRS) | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(TSAN_FLAGS) -DFU_RUNTIME_DIR='"$(RT_DIR)"' -c $< -o $@
$(BUILD)/tsan/libfusec.a: $(patsubst %.c,$(BUILD)/tsan/obj/%.o,$(LIB_SRC)) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/tsan/tsan_threads: tests/tsan/tsan_threads.c api/fusec.h $(BUILD)/tsan/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $(TSAN_FLAGS) $< $(BUILD)/tsan/libfusec.a $(RT_LINK) $(LIBS) -o $@

test: all $(TESTS) $(ASAN_TESTS) $(BUILD)/router $(FUZZ_BINS) $(BUILD)/tsan/tsan_threads
	@bash tests/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# ---- the router example (examples/router/README.md) ----------------------
$(BUILD)/router: examples/router/router.c api/fusec.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
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
$(BUILD)/bench_router: bench/bench_router.c api/fusec.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

# The machine's roofline (FMA and BF16-dot peaks, read bandwidth) that
# bench_router runs and prints; -march=native: it only measures this machine.
$(BUILD)/roofline: bench/roofline.c | $(BUILD)/.deps
	$(CC) -std=c11 $(WARN) -O2 -march=native -D_GNU_SOURCE $< -lpthread -o $@

# ONNX Runtime for the side-by-side lanes of `make bench` only (tests never
# need it): onnxruntime-node from the npm registry under build/ort, installed
# once (the stamp). Its package ships the CPU binaries, so no install scripts.
# A failed install does not stop the benchmark: its ORT lane prints n/a.
ORT_VERSION := 1.30.0
ORT_STAMP   := $(BUILD)/ort/.installed-onnxruntime-node-$(ORT_VERSION)
$(ORT_STAMP): | $(BUILD)/.deps
	@command -v npm >/dev/null || { echo "installing: nodejs npm"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } >$(BUILD)/apt.log 2>&1 \
	  || cat $(BUILD)/apt.log; }
	@mkdir -p $(BUILD)/ort
	@if npm install --prefix $(BUILD)/ort --ignore-scripts --no-audit --no-fund onnxruntime-node@$(ORT_VERSION); \
	then touch $@; else echo "make bench: installing onnxruntime-node failed: no ONNX Runtime lane"; fi

# The packed GEMM against the roofline (bench/bench_gemm.c).
$(BUILD)/bench_gemm: bench/bench_gemm.c runtime/gemm.h runtime/fusec_kernels.h $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(RT_LINK) -lm -o $@

# Kernels on 1 and 2 threads: where sharing across cores pays (bench/bench_parallel.c).
$(BUILD)/bench_parallel: bench/bench_parallel.c api/fusec.h runtime/fusec_kernels.h $(BUILD)/libfusec.a $(BUILD)/libfusec_rt.so
	$(CC) $(CFLAGS) $< $(BUILD)/libfusec.a $(RT_LINK) $(LIBS) -o $@

bench: $(BUILD)/bench_kernels $(BUILD)/bench_gemm $(BUILD)/bench_parallel $(BUILD)/bench_router $(BUILD)/roofline \
       $(ORT_STAMP)
	$(BUILD)/bench_kernels
	$(BUILD)/bench_gemm
	$(BUILD)/bench_parallel
	$(BUILD)/bench_router
