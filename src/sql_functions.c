/*-------------------------------------------------------------------------
 *
 * sql_functions.c
 *	  The C functions behind the extension's SQL entry points.
 *
 *	  publish._wake_worker_at_commit()       wake this database's worker at commit
 *	  publish._wake_worker_on_queued()       the same, as job_queue's trigger
 *	  publish._release_document(uuid, text, timestamptz)  release.json, as json
 *	  publish._validation_problems(uuid)     every problem of a version
 *	  publish._jsonb_text_size(jsonb)        bytes of a jsonb value's text, unmade
 *	  publish._job_event_prepare()          listen for job ends (wait_job)
 *	  publish._job_event_sleep(int)         sleep until a job ends or timeout
 *	  publish._library_version()            the version of the library loaded
 *
 * and publish_shared_definitions, which no install script declares: the
 * names and limits the C code shares with the install script, for the
 * test that compares them (test/sql/08_shared_definitions.sql).
 *
 * The public functions (publish_version, build_release, validate_version)
 * are PL/pgSQL wrappers in publish--1.0.sql that check their arguments and
 * call these.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "publish.h"
#include "ipc/ipc.h"
#include "jobs/jobs.h"
#include "queue/queue.h"
#include "release/release.h"
#include "tile/tile.h"

PG_FUNCTION_INFO_V1(publish_wake_worker_at_commit);
PG_FUNCTION_INFO_V1(publish_wake_worker_on_queued);
PG_FUNCTION_INFO_V1(publish_release_document);
PG_FUNCTION_INFO_V1(publish_validation_problems);
PG_FUNCTION_INFO_V1(publish_jsonb_text_size);
PG_FUNCTION_INFO_V1(publish_job_event_prepare);
PG_FUNCTION_INFO_V1(publish_job_ended_at_commit_sql);
PG_FUNCTION_INFO_V1(publish_cancel_worker_at_commit_sql);
PG_FUNCTION_INFO_V1(publish_job_event_sleep);
PG_FUNCTION_INFO_V1(publish_shared_definitions);
PG_FUNCTION_INFO_V1(publish_library_version);

static void
require_preloaded(void)
{
	if (!publish_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publish is not loaded through shared_preload_libraries"),
				 errdetail("The publish worker runs only when the server loads the library at start."),
				 errhint("Add publish to shared_preload_libraries in postgresql.conf and restart the server.")));
}

Datum
publish_wake_worker_at_commit(PG_FUNCTION_ARGS)
{
	require_preloaded();
	publish_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * The job queue's wake-up triggers (publish--1.0.sql): a row inserted as
 * 'queued' or 'running', or updated to 'queued', by any statement (a
 * superuser's INSERT, a restore's COPY, a job set back to 'queued' by hand,
 * as much as publish_version) wakes a worker at commit.  Without the
 * preloaded library there is no worker to wake, and a restore into such a
 * server must not fail: then it does nothing.
 */
Datum
publish_wake_worker_on_queued(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("publish._wake_worker_on_queued() must be called as a trigger")));
	if (publish_shmem_ready())
		publish_wake_at_commit();
	return PointerGetDatum(NULL);
}

/* ISO 8601 UTC text of a timestamptz, as release.json writes it. */
static char *
iso_utc(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("published_at must be a finite timestamp")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

static char *
uuid_text(Datum uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, uuid));
}

/*
 * release.json as the worker writes it, returned as json: the document's
 * bytes as they are, neither parsed nor printed again.  Like the worker it
 * makes no estimate of the size first (a pass over every overlay): the
 * builder refuses, with PT413, an overlay too large as stored before it is
 * read and a document before it would pass publish.max_release_size, so
 * memory stays bounded by the limit.
 */
Datum
publish_release_document(PG_FUNCTION_ARGS)
{
	char	   *version_id = uuid_text(PG_GETARG_DATUM(0));
	char	   *env = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *published_at = iso_utc(PG_GETARG_TIMESTAMPTZ(2));
	MemoryContext mcxt = CurrentMemoryContext;
	ReleaseInput *in;
	ReleaseDoc *doc;
	List	   *problems;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	in = release_input_load(version_id, env, published_at, false, mcxt);
	MemoryContextSwitchTo(mcxt);
	doc = release_doc_create(mcxt, false);	/* a preview has no checksum */
	problems = release_build(in, doc, RELEASE_REPORTED_PROBLEMS);
	SPI_finish();

	if (problems != NIL)
		release_report_problems(in, problems);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(doc->data, doc->len));
}

Datum
publish_validation_problems(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *version_id = uuid_text(PG_GETARG_DATUM(0));
	MemoryContext mcxt = CurrentMemoryContext;
	ReleaseInput *in;
	List	   *problems;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	/* the environment only matters for URLs; any configured one will do */
	in = release_input_load(version_id, "", "", true, mcxt);
	MemoryContextSwitchTo(mcxt);
	problems = release_build(in, NULL, 0);
	SPI_finish();

	foreach(lc, problems)
	{
		Datum		value = CStringGetTextDatum((char *) lfirst(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

/*
 * wait_job() listens first, then looks at the job, then sleeps: a job that
 * ends between the look and the sleep has already woken the sleeper (the
 * worker broadcasts the database's condition variable after each job).
 */
Datum
publish_job_event_prepare(PG_FUNCTION_ARGS)
{
	ConditionVariable *cv;

	require_preloaded();
	cv = publish_shmem_job_ended_cv(MyDatabaseId);
	if (cv)
		ConditionVariablePrepareToSleep(cv);
	PG_RETURN_VOID();
}

Datum
publish_job_event_sleep(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_GETARG_INT32(0);
	ConditionVariable *cv;

	require_preloaded();
	cv = publish_shmem_job_ended_cv(MyDatabaseId);
	if (timeout_ms <= 0)
		PG_RETURN_VOID();
	if (cv == NULL)
		pg_usleep(Min(timeout_ms, 100) * 1000L);	/* no slot: poll gently */
	else
	{
		(void) ConditionVariableTimedSleep(cv, timeout_ms, PG_WAIT_EXTENSION);
		ConditionVariableCancelSleep();
	}
	PG_RETURN_VOID();
}

/* publish._job_ended_at_commit(): wake wait_job() sleepers at commit. */
Datum
publish_job_ended_at_commit_sql(PG_FUNCTION_ARGS)
{
	require_preloaded();
	publish_job_ended_at_commit();
	PG_RETURN_VOID();
}

/*
 * publish._cancel_worker_at_commit(job): interrupt the worker of this
 * database that runs the cancelled job when this transaction commits, if
 * one runs it then.
 */
Datum
publish_cancel_worker_at_commit_sql(PG_FUNCTION_ARGS)
{
	char	   *job_id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));

	require_preloaded();
	publish_cancel_worker_at_commit(job_id);
	PG_RETURN_VOID();
}

/*
 * octet_length(value::text) without making the text, whose size a small
 * value does not bound (publish._check_release_limits sums it).
 */
Datum
publish_jsonb_text_size(PG_FUNCTION_ARGS)
{
	Jsonb	   *value = PG_GETARG_JSONB_P(0);

	PG_RETURN_INT64((int64) release_text_size(value));
}

/* A row (name, value) of publish_shared_definitions. */
static void
put_definition(ReturnSetInfo *rsinfo, const char *name, const char *value)
{
	Datum		values[2] = {CStringGetTextDatum(name),
	CStringGetTextDatum(value)};
	bool		nulls[2] = {false, false};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The names of a NULL-terminated list, comma-separated. */
static char *
joined(const char *const *names)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; names[i] != NULL; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? "," : "", names[i]);
	return buf.data;
}

/*
 * publish_shared_definitions(OUT name text, OUT value text) SETOF record:
 * the names and limits the C code and the install script both state, as
 * the C code has them.  Not part of the extension's SQL: the test declares
 * it.
 */
Datum
publish_shared_definitions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char **types;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	while (job_types[n] != NULL)
		n++;
	types = palloc(sizeof(char *) * (n + 1));
	for (int i = 0; i <= n; i++)
		types[i] = job_types[i] ? job_types[i]->name : NULL;
	put_definition(rsinfo, "job types", joined(types));
	put_definition(rsinfo, "job statuses", joined(job_statuses));
	put_definition(rsinfo, "job log levels", joined(job_log_levels));
	put_definition(rsinfo, "properties depth",
				   psprintf("%d", RELEASE_VALUE_MAX_DEPTH));
	put_definition(rsinfo, "max zoom", psprintf("%d", TILE_MAX_ZOOM));
	put_definition(rsinfo, "library version", PUBLISH_LIBRARY_VERSION);
	return (Datum) 0;
}

/*
 * publish._library_version(): the version of the library this backend
 * runs, which is the one the server loaded at start (it is preloaded),
 * whatever file make install has put in its place since.  Its symbol is
 * new in 1.1: the upgrade script that creates the function fails while an
 * older library runs (publish--1.0--1.1.sql says so in words).
 */
Datum
publish_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PUBLISH_LIBRARY_VERSION));
}
