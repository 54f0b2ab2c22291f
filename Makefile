# Tally — build, test, bench, run.  `make run` and `make test` are the two
# set-up commands (README.md); both install missing Debian packages first.
CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-format-truncation
BASE    := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -pthread $(WARN)
CFLAGS  ?= -O2 -g
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  := -lmicrohttpd -ljansson -lcurl -ledit -lcrypto -lsqlite3 -lpthread -lm

LIB_SRC   := $(sort $(wildcard src/*/*.c))
TOOL_SRC  := $(sort $(wildcard tools/cli*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
DATA_DIR  ?= tally-data

B  := build
BS := build/asan

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
LIB_OBJ_S := $(LIB_SRC:%.c=$(BS)/%.o)
TESTS     := $(TEST_SRC:tests/%.c=$(B)/tests/%)
TESTS_S   := $(TEST_SRC:tests/%.c=$(BS)/tests/%)

.PHONY: all deps run test test-long bench clean demo fuzz
all: deps $(B)/libtally.a $(B)/tally $(TESTS)

deps:
	@scripts/deps.sh

$(B)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(BASE) $(CFLAGS) -c $< -o $@
$(BS)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(BASE) $(SANFLAGS) -c $< -o $@

$(B)/libtally.a: $(LIB_OBJ)
	ar rcs $@ $^
$(BS)/libtally.a: $(LIB_OBJ_S)
	ar rcs $@ $^

$(B)/tally: tools/tally.c $(TOOL_SRC) $(B)/libtally.a
	$(CC) $(BASE) $(CFLAGS) tools/tally.c $(TOOL_SRC) $(B)/libtally.a $(LDLIBS) -o $@
$(BS)/tally: tools/tally.c $(TOOL_SRC) $(BS)/libtally.a
	$(CC) $(BASE) $(SANFLAGS) tools/tally.c $(TOOL_SRC) $(BS)/libtally.a $(LDLIBS) -o $@

$(B)/tallyd: tools/tallyd.c $(B)/libtally.a
	$(CC) $(BASE) $(CFLAGS) tools/tallyd.c $(B)/libtally.a $(LDLIBS) -o $@
$(BS)/tallyd: tools/tallyd.c $(BS)/libtally.a
	$(CC) $(BASE) $(SANFLAGS) tools/tallyd.c $(BS)/libtally.a $(LDLIBS) -o $@

$(B)/tests/%: tests/%.c tests/testutil.h $(B)/libtally.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(CFLAGS) $< $(B)/libtally.a $(LDLIBS) -o $@
$(BS)/tests/%: tests/%.c tests/testutil.h $(BS)/libtally.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(SANFLAGS) $< $(BS)/libtally.a $(LDLIBS) -o $@

$(B)/bench: bench/bench.c $(B)/libtally.a
	$(CC) $(BASE) -O2 -g bench/bench.c $(B)/libtally.a $(LDLIBS) -o $@

# Every test: C unit tests under ASan+UBSan and optimized, then the CLI/crash tests.
test: deps $(B)/tally $(BS)/tally $(TESTS) $(TESTS_S)
	@tests/run.sh

test-long: deps $(B)/tally $(BS)/tally $(TESTS) $(TESTS_S)
	@TALLY_LONG=1 tests/run.sh

bench: deps $(B)/bench $(B)/tally
	@$(B)/bench

# libFuzzer over the parsers of untrusted bytes (needs clang); `make test`
# already replays fuzz/corpus and a mutation stream without libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: deps
	@command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install -y clang)"; exit 1; }
	clang -g -O1 -fsanitize=fuzzer,address,undefined $(BASE) fuzz/fuzz_record.c src/log/record.c \
	    src/merkle/rfc6962.c src/util/sha256.c src/util/crc32c.c -lcrypto -o $(B)/fuzz_record
	@mkdir -p $(B)/fuzz-corpus && cp -n fuzz/corpus/record/* $(B)/fuzz-corpus/ 2>/dev/null || true
	$(B)/fuzz_record -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(B)/fuzz-corpus

# Until tallyd exists, `make run` runs the embedded demo on $(DATA_DIR).
run: deps $(B)/tally
	@scripts/demo.sh $(B)/tally $(DATA_DIR)

clean:
	rm -rf $(B)
