# fogfabric: one non-recursive Makefile.
# Library folders build to static archives; binaries link what they need.
# New .c files are picked up by folder, so adding a module needs no edit here.

CC       ?= cc
O        ?= build
PREFIX   ?= /usr/local
PKGS     := libmicrohttpd jansson sqlite3 gnutls nettle hogweed libcurl libvirt \
            libxml-2.0 libnl-3.0 libnl-genl-3.0 libnl-route-3.0 libpci
WERROR   ?=
SAN      ?=
# Parallel jobs for the builds that test, asan, fuzz, demo and deb run
# themselves (a plain `make` stays serial unless given -j).
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

CFLAGS   ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
            -Wformat=2 -Wshadow -Wno-missing-field-initializers -Wstrict-prototypes -Wmissing-prototypes \
            -fstack-protector-strong -fno-strict-aliasing -MMD -MP -I. \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(WERROR) $(SAN)
ifeq ($(filter -O0,$(CFLAGS)),)
override CFLAGS += -D_FORTIFY_SOURCE=2
endif
override LDFLAGS += $(SAN) -Wl,-z,relro,-z,now
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lreadline -lpthread -lm
# libpq only in the controller: agents on providers' machines stay lean.
# libguestfs (image inspection) is loaded at run time (controller/inspect.c),
# so a hub without it installed runs without inspection; only the tests that
# boot an appliance themselves link it.
override CFLAGS += $(shell pkg-config --cflags libguestfs libpq 2>/dev/null)
CTL_LIBS := $(shell pkg-config --libs libpq 2>/dev/null)
GUESTFS_LIBS := $(shell pkg-config --libs libguestfs 2>/dev/null)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Plain `make` builds the programs and tests, not the first library rule.
.DEFAULT_GOAL := all
# Every rule is written here. With make's built-in ones, it searched them
# (RCS, SCCS, chains through our patterns) for each dependency file of
# $(O)/tests before doing anything: minutes per call once tests were built.
MAKEFLAGS += --no-builtin-rules

# ---- libraries -------------------------------------------------------------
LIBDIRS   := common api netfabric images billing
define lib_rules
$(1)_SRC := $$(wildcard $(1)/*.c)
$(1)_OBJ := $$($(1)_SRC:%.c=$(O)/%.o)
$(O)/lib$(1).a: $$($(1)_OBJ)
	@echo "  AR      $$@"
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach d,$(LIBDIRS),$(eval $(call lib_rules,$(d))))

# Schema migrations are compiled into the controller.
SCHEMA    := $(sort $(wildcard controller/schema/*.sql))
# The list of migrations is a prerequisite too, so removing one regenerates.
$(O)/controller/schema.list: FORCE
	@mkdir -p $(dir $@)
	@echo '$(SCHEMA)' | cmp -s - $@ || echo '$(SCHEMA)' > $@
$(O)/controller/schema_sql.c: $(SCHEMA) $(O)/controller/schema.list tools/embed_sql.sh
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	$(Q)sh tools/embed_sql.sh $(SCHEMA) > $@
controller_EXTRA := $(O)/controller/schema_sql.o
$(O)/controller/schema_sql.o: $(O)/controller/schema_sql.c controller/schema.h
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<


# Program folders: everything but main.c is an archive too, so tests can
# link a program's modules without its main().
define prog_rules
$(1)_SRC := $$(filter-out $(1)/main.c,$$(wildcard $(1)/*.c))
$(1)_OBJ := $$($(1)_SRC:%.c=$(O)/%.o) $$($(1)_EXTRA)
$(O)/lib$(1).a: $$($(1)_OBJ)
	@echo "  AR      $$@"
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach d,controller nodeagent cli,$(eval $(call prog_rules,$(d))))

BASELIBS := $(O)/libapi.a $(O)/libnetfabric.a $(O)/libimages.a \
            $(O)/libbilling.a $(O)/libcommon.a

# ---- programs --------------------------------------------------------------
# Programs land in bin/ (tests find them through FOG_BIN, default bin);
# the sanitizer build puts its own in build-asan/bin.
BINDIR ?= bin
BINS := $(BINDIR)/fog-controller $(BINDIR)/fog-nodeagent $(BINDIR)/fogctl

$(BINDIR)/fog-controller: $(O)/controller/main.o $(O)/libcontroller.a $(BASELIBS)
$(BINDIR)/fog-nodeagent:  $(O)/nodeagent/main.o $(O)/libnodeagent.a $(BASELIBS)
$(BINDIR)/fogctl:         $(O)/cli/main.o $(O)/libcli.a $(BASELIBS)
$(BINDIR)/fog-controller: override LDLIBS += $(CTL_LIBS)
$(BINS):
	@mkdir -p $(BINDIR)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests -----------------------------------------------------------------
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
INTEG_BINS:= $(INTEG_SRC:tests/integration/%.c=$(O)/tests/%)
SEC_SRC   := $(wildcard tests/security/test_*.c)
SEC_BINS  := $(SEC_SRC:tests/security/%.c=$(O)/tests/%)
TESTLIB   := $(O)/tests/testutil.o
ALLLIBS   := $(O)/libcontroller.a $(O)/libnodeagent.a $(O)/libcli.a $(BASELIBS)

$(O)/tests/%: $(O)/tests/unit/%.o $(TESTLIB) $(ALLLIBS)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CTL_LIBS) -lcmocka
$(O)/tests/%: $(O)/tests/integration/%.o $(TESTLIB) $(ALLLIBS)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CTL_LIBS) $(GUESTFS_LIBS) -lcmocka
$(O)/tests/%: $(O)/tests/security/%.o $(TESTLIB) $(ALLLIBS)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CTL_LIBS) -lcmocka
$(O)/tests/testutil.o: tests/testutil.c tests/testutil.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

BENCH_SRC  := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(O)/bench/%)
$(O)/bench/%: $(O)/bench/%.o $(TESTLIB) $(ALLLIBS)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CTL_LIBS)

# libFuzzer targets for the parsers of other parties' bytes (clang only):
# `make fuzz` builds them into build-fuzz/ and runs each FUZZ_SECONDS.
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=$(O)/fuzz/%)
$(O)/fuzz/%: $(O)/tests/fuzz/%.o $(ALLLIBS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS) $(CTL_LIBS)
fuzz-build: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_SRC:tests/fuzz/%.c=$(O)/tests/fuzz/%.o)

# ---- generic ---------------------------------------------------------------
$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

FORCE:
.PHONY: FORCE all deps test test-unit test-pg test-integration test-e2e demo bench asan \
        valgrind install clean guest guest-debian deb fuzz fuzz-build fuzz-smoke
all: $(BINS) $(UNIT_BINS) $(INTEG_BINS) $(SEC_BINS) $(BENCH_BINS)

# Installs every Debian package the project needs; idempotent.
deps:
	$(Q)sh tools/deps.sh

guest:
	$(Q)sh tests/guest/build.sh

# The Debian 12 cloud image (systemd, cloud-init, ssh, nginx) built with
# mmdebstrap, cached in build/debian/ (tools/mkguest-debian.sh says how).
guest-debian:
	$(Q)sh tools/mkguest-debian.sh

# The whole suite: unit, integration and end to end (FOG_SKIP_E2E=1 skips
# the QEMU tests).
test: deps
	$(Q)$(MAKE) --no-print-directory -j$(JOBS) all WERROR=$(or $(WERROR),-Werror)
	$(Q)O=$(O) sh tests/run.sh

test-unit: all
	$(Q)O=$(O) FOG_ONLY=unit sh tests/run.sh

# The integration suite with every controller on PostgreSQL (a throwaway
# cluster per test binary, a database per controller) instead of sqlite.
test-pg: all
	$(Q)O=$(O) FOG_ONLY=integration FOG_TEST_DATABASE=postgresql sh tests/run.sh

# Builds everything with ASan+UBSan in build-asan/ and runs unit and
# integration tests under it (no QEMU, which the sanitizers would slow).
asan:
	$(Q)$(MAKE) --no-print-directory -j$(JOBS) all O=build-asan BINDIR=build-asan/bin \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	    CFLAGS="-O1 -g" WERROR=-Werror
	$(Q)O=build-asan FOG_BIN=build-asan/bin FOG_SKIP_E2E=1 ASAN_OPTIONS=detect_leaks=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 sh tests/run.sh

# Coverage-guided fuzzing with ASan+UBSan: each target FUZZ_SECONDS (60),
# one per core at a time, from its seed corpus in tests/fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
fuzz:
	$(Q)$(MAKE) --no-print-directory -j$(JOBS) fuzz-build O=build-fuzz CC=$(FUZZ_CC) \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    CFLAGS="-O1 -g" WERROR=-Werror
	$(Q)O=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh

# The short pass CI runs.
fuzz-smoke:
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

valgrind: all
	$(Q)O=$(O) FOG_ONLY=unit FOG_WRAP="valgrind -q --error-exitcode=99 --leak-check=full" sh tests/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory -j$(JOBS) all
	$(Q)sh tools/demo.sh

bench: all
	$(Q)O=$(O) sh bench/run.sh

# Debian packages (fogfabric-controller, fogfabric-nodeagent, fogctl)
# into build/deb/, then lintian on them.
deb:
	$(Q)mkdir -p build/deb
	$(Q)dpkg-buildpackage -us -uc -b -J$(JOBS) \
	    --buildinfo-option=-ubuild/deb --changes-option=-ubuild/deb \
	    --buildinfo-option=-Obuild/deb/fogfabric.buildinfo \
	    --changes-option=-Obuild/deb/fogfabric.changes
	$(Q)lintian --fail-on error build/deb/fogfabric.changes

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/fogfabric/templates
	install -m 0644 images/templates/*.json $(DESTDIR)$(PREFIX)/share/fogfabric/templates/

clean:
	rm -rf $(O) build-asan build-fuzz bin

DEPS := $(shell find $(O) -name '*.d' 2>/dev/null)
-include $(DEPS)
