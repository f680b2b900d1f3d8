# Front door. `make` builds; `make run` sets up and starts the manager on loopback;
# `make test` sets up and runs every test (also under ASan/UBSan); `make bench`.
PYTHON   ?= /usr/bin/python3
BUILD    ?= build
ASAN     ?= build-asan
FUZZ     ?= build-fuzz
CONF     ?= etc/lazaretd.dev.conf

.PHONY: all build bootstrap run test test-unit test-e2e test-asan bench fuzz format clean install

all: build

bootstrap:
	@./scripts/bootstrap

$(BUILD)/build.ninja:
	meson setup $(BUILD) >/dev/null

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: bootstrap build
	@mkdir -p var
	./$(BUILD)/lazaretd -c $(CONF)

test: bootstrap build
	./scripts/run-tests $(BUILD) $(ASAN)

test-unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

test-e2e: build
	LAZARET_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -rfs tests/e2e

$(ASAN)/build.ninja:
	meson setup $(ASAN) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null

test-asan: $(ASAN)/build.ninja
	ninja -C $(ASAN)
	top=$(CURDIR) && . ./scripts/sanitizer-env && \
	meson test -C $(ASAN) --suite unit --print-errorlogs && \
	LAZARET_BUILD=$(abspath $(ASAN)) LAZARET_SANITIZED=1 $(PYTHON) -m pytest -q -rfs tests/e2e

bench: bootstrap build
	./bench/run-all

fuzz:
	@./scripts/bootstrap fuzz
	[ -f $(FUZZ)/build.ninja ] || CC=clang meson setup $(FUZZ) -Dfuzz=true -Dwerror=false -Dc_args=-fsanitize=fuzzer-no-link -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C $(FUZZ)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
