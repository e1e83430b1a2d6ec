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
# sql/publish--1.0.sql is 1.0 as released, never edited again; each version
# since adds an upgrade script (publish--1.0--1.1.sql).  The full script of
# the default version is made from them (below), so that a fresh install
# and an upgraded one run the same statements and end with the same objects.
DATA_built   = sql/publish--1.1.sql
DATA         = $(filter-out $(DATA_built),$(wildcard sql/publish--*.sql))
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

# the full install script of 1.1: 1.0, then the upgrade to 1.1 (CREATE
# EXTENSION drops their "\echo ... \quit" guard lines)
sql/publish--1.1.sql: sql/publish--1.0.sql sql/publish--1.0--1.1.sql
	cat $^ > $@

# every object depends on the shared headers (struct layouts must agree)
$(OBJS): $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.h))

indent:
	$(srcdir)/scripts/indent.sh

typedefs: all
	$(srcdir)/scripts/indent.sh --typedefs

.PHONY: indent typedefs
