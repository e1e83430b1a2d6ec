# PGXS build of the publish extension.
#   make && make install        build and install into the PostgreSQL found by PG_CONFIG
#   make installcheck           the pg_regress suite (test/sql, test/expected) against a
#                               running server with shared_preload_libraries = 'publish'
#                               (PGHOST, PGPORT, PGUSER say which; a superuser)
#   ./scripts/test.sh           the whole test suite (starts its own cluster)
#   make indent                 format src/ as PostgreSQL's pgindent does
#   make typedefs               after adding a type: scripts/typedefs.list again

EXTENSION    = publish
MODULE_big   = publish
# src/ holds the module's entry points; each folder one concern
# (docs/architecture.md)
SRC_DIRS     = src src/bgw src/jobs src/tile src/release src/queue \
               src/storage src/net src/ipc src/util
OBJS         = $(patsubst %.c,%.o,$(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c)))
DATA         = $(wildcard sql/publish--*.sql)
PGFILEDESC   = "publish - publish map project versions to storage"
REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test

PG_CONFIG   ?= pg_config
PKG_CONFIG  ?= pkg-config

PG_CPPFLAGS  = -I$(srcdir)/src $(shell $(PKG_CONFIG) --cflags libcurl json-c vips zlib)
SHLIB_LINK   = $(shell $(PKG_CONFIG) --libs libcurl json-c vips zlib)
PG_CFLAGS    = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-clobbered

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared headers (struct layouts must agree)
$(OBJS): $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.h))

indent:
	$(srcdir)/scripts/indent.sh

typedefs: all
	$(srcdir)/scripts/indent.sh --typedefs

.PHONY: indent typedefs
