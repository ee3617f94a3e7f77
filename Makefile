# Retort build. `make` builds libretort (static + shared) and the CLI; `make test` runs every test;
# `make sanitize` runs the tests under ASan + UBSan; `make bench` prints kernel and step timings.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
BLAS_INC ?= /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
CFLAGS  += -std=c11 $(OPT) -g -fPIC -fopenmp -Wall -Wextra -Wno-unused-parameter \
           -D_GNU_SOURCE -Iinclude -Isrc -I$(BLAS_INC) $(XCFLAGS)
LDLIBS  += -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lyaml -lcjson -lz -lm -fopenmp -pthread $(XLDFLAGS)

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC  := $(shell find src/cli -name '*.c' 2>/dev/null | sort)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# SIMD kernels are compiled per file for their ISA and chosen at run time (src/kernels/cpu.c).
$(BUILD)/%_avx2.o:   XFLAGS = -mavx2 -mfma
$(BUILD)/%_avx512.o: XFLAGS = -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma

.PHONY: all lib test sanitize bench clean format
all: lib $(BUILD)/retort

lib: $(BUILD)/libretort.a $(BUILD)/libretort.so

$(BUILD)/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XFLAGS) -c $< -o $@

$(BUILD)/libretort.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libretort.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/retort: $(CLI_OBJ) $(BUILD)/libretort.a
	@if [ -n "$(CLI_OBJ)" ]; then $(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libretort.a $(LDLIBS); else touch $@; fi

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libretort.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libretort.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(BUILD)/libretort.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libretort.a $(LDLIBS)

test: $(TESTS)
	@sh tests/run.sh $(TESTS)

sanitize:
	$(MAKE) BUILD=build-san OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  XLDFLAGS="-fsanitize=address,undefined" test

bench: $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf build build-san

format:
	clang-format -i $$(find include src tests bench -name '*.[ch]')
