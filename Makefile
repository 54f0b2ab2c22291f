# Tally — build, test, bench, run.  `make run` and `make test` are the two
# set-up commands (README.md); both install missing Debian packages first.
CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-format-truncation
BASE    := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -pthread $(WARN)
CFLAGS  ?= -O2 -g
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  := -lmicrohttpd -ljansson -lcurl -ledit -lcrypto -lsqlite3 -lpthread -lm

# The embedded engine; the client and the server are separate libraries.
LIB_SRC   := $(sort $(wildcard src/os/*.c src/util/*.c src/log/*.c src/merkle/*.c src/index/*.c src/core/*.c src/note/*.c))
CLI_SRC   := $(sort $(wildcard src/client/*.c))
SRV_SRC   := $(sort $(wildcard src/server/*.c))
TOOL_SRC  := $(sort $(wildcard tools/cli*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
DATA_DIR  ?= tally-data

B  := build
BS := build/asan

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
LIB_OBJ_S := $(LIB_SRC:%.c=$(BS)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(B)/%.o)
CLI_OBJ_S := $(CLI_SRC:%.c=$(BS)/%.o)
SRV_OBJ   := $(SRV_SRC:%.c=$(B)/%.o)
SRV_OBJ_S := $(SRV_SRC:%.c=$(BS)/%.o)
LIBS      := $(B)/libtally_client.a $(B)/libtally.a
LIBS_S    := $(BS)/libtally_client.a $(BS)/libtally.a
TESTS     := $(TEST_SRC:tests/%.c=$(B)/tests/%)
TESTS_S   := $(TEST_SRC:tests/%.c=$(BS)/tests/%)

.PHONY: all deps run test test-long bench clean demo fuzz
all: deps $(B)/libtally.a $(B)/tally $(B)/tallyd $(TESTS)

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
	@ar rcs $@ $^
$(BS)/libtally.a: $(LIB_OBJ_S)
	@ar rcs $@ $^
$(B)/libtally_client.a: $(CLI_OBJ) $(B)/libtally.a
	@rm -f $@ && ar rcs $@ $(CLI_OBJ) $(if $(CLI_OBJ),,$(B)/src/util/err.o)
$(BS)/libtally_client.a: $(CLI_OBJ_S) $(BS)/libtally.a
	@rm -f $@ && ar rcs $@ $(CLI_OBJ_S) $(if $(CLI_OBJ_S),,$(BS)/src/util/err.o)

$(B)/tally: tools/tally.c $(TOOL_SRC) $(LIBS)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(CFLAGS) tools/tally.c $(TOOL_SRC) $(LIBS) $(LDLIBS) -o $@
$(BS)/tally: tools/tally.c $(TOOL_SRC) $(LIBS_S)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(SANFLAGS) tools/tally.c $(TOOL_SRC) $(LIBS_S) $(LDLIBS) -o $@

$(B)/tallyd: tools/tallyd.c $(SRV_OBJ) $(B)/libtally.a
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(CFLAGS) tools/tallyd.c $(SRV_OBJ) $(B)/libtally.a $(LDLIBS) -o $@
$(BS)/tallyd: tools/tallyd.c $(SRV_OBJ_S) $(BS)/libtally.a
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(SANFLAGS) tools/tallyd.c $(SRV_OBJ_S) $(BS)/libtally.a $(LDLIBS) -o $@

$(B)/tests/%: tests/%.c $(wildcard tests/*.h) $(wildcard fuzz/*.c) $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(CFLAGS) $< $(LIBS) $(LDLIBS) -o $@
$(BS)/tests/%: tests/%.c $(wildcard tests/*.h) $(wildcard fuzz/*.c) $(LIBS_S)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(BASE) $(SANFLAGS) $< $(LIBS_S) $(LDLIBS) -o $@

$(B)/bench: bench/bench.c $(B)/libtally.a
	$(CC) $(BASE) -O2 -g bench/bench.c $(B)/libtally.a $(LDLIBS) -o $@

# Every test: C unit tests under ASan+UBSan and optimized, then the CLI/crash tests.
test: deps $(B)/tally $(BS)/tally $(B)/tallyd $(BS)/tallyd $(TESTS) $(TESTS_S)
	@tests/run.sh

test-long: deps $(B)/tally $(BS)/tally $(B)/tallyd $(BS)/tallyd $(TESTS) $(TESTS_S)
	@TALLY_LONG=1 tests/run.sh

$(B)/bench_server: bench/bench_server.c $(LIBS)
	@echo "  LINK    $@"
	@$(CC) $(BASE) -O2 -g bench/bench_server.c $(LIBS) $(LDLIBS) -o $@

# The engine against same-run limits and SQLite, then the server over HTTP
# against PostgreSQL (bench/pg_compare.sh installs and starts it as root).
bench: deps $(B)/bench $(B)/bench_server $(B)/tally $(B)/tallyd
	@$(B)/bench
	@$(B)/bench_server --tallyd $(B)/tallyd

# libFuzzer over the parsers of untrusted bytes (needs clang); `make test`
# already replays fuzz/corpus and a mutation stream without libFuzzer.
# clang does not know gcc's -Wno-format-truncation (in WARN): without
# -Wno-unknown-warning-option, -Werror makes that an error.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined $(BASE) -Wno-unknown-warning-option
fuzz: deps
	@command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install -y clang)"; exit 1; }
	clang $(FUZZ_CFLAGS) fuzz/fuzz_record.c src/log/record.c \
	    src/merkle/rfc6962.c src/util/sha256.c src/util/crc32c.c -lcrypto -o $(B)/fuzz_record
	@mkdir -p $(B)/fuzz-corpus && cp -n fuzz/corpus/record/* $(B)/fuzz-corpus/ 2>/dev/null || true
	$(B)/fuzz_record -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(B)/fuzz-corpus
	clang $(FUZZ_CFLAGS) fuzz/fuzz_bundles.c src/client/client_verify.c \
	    src/note/note.c src/merkle/rfc6962.c src/log/record.c src/util/sha256.c src/util/crc32c.c \
	    src/util/err.c src/util/text.c -ljansson -lcrypto -o $(B)/fuzz_bundles
	@mkdir -p $(B)/fuzz-corpus-bundles && cp -n fuzz/corpus/bundles/* $(B)/fuzz-corpus-bundles/ 2>/dev/null || true
	$(B)/fuzz_bundles -max_total_time=$(FUZZ_SECONDS) -max_len=16384 $(B)/fuzz-corpus-bundles

# `make run` starts tallyd on ./tally-server and prints how to log in;
# `make demo` runs the embedded (serverless) demo on $(DATA_DIR).
SERVER_DIR ?= tally-server
LISTEN ?= 127.0.0.1:8700
run: deps $(B)/tally $(B)/tallyd
	@scripts/run-server.sh $(B)/tallyd $(B)/tally $(SERVER_DIR) $(LISTEN)

demo: deps $(B)/tally
	@scripts/demo.sh $(B)/tally $(DATA_DIR)

clean:
	rm -rf $(B)
