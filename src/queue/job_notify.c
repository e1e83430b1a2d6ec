/*-------------------------------------------------------------------------
 *
 * job_notify.c
 *	  The job queue's NOTIFY trigger: channel publish_jobs hears of every
 *	  change of a job's status or progress.
 *
 * publish._notify_job_change() fires AFTER UPDATE OF status, progress FOR
 * EACH ROW on publish.job_queue, and sends NOTIFY publish_jobs with
 * {"id" : "…", "status" : "…", "progress" : N} (the text json_build_object
 * makes) when the status or the progress changed.  Not when a job is
 * queued: see the trigger's comment in publish--1.0.sql.
 *
 * It is C because it fires for every progress write of every job, where a
 * PL/pgSQL function call, json_build_object and a pinned search_path (a
 * GUC save and restore per row) showed in the cost of each publish
 * (docs/performance.md, "Throughput").  It runs no SQL and looks nothing
 * up by name but the table's own columns.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "access/htup_details.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/rel.h"

#include "publish.h"
#include "queue/queue.h"

#define JOB_CHANNEL "publish_jobs"

PG_FUNCTION_INFO_V1(publish_notify_job_change);

/* The number of column name in desc; an error if there is none. */
static int
column_number(TupleDesc desc, const char *name)
{
	int			att = SPI_fnumber(desc, name);

	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("publish._notify_job_change() needs a column \"%s\"", name)));
	return att;
}

/* Are the values of column att in the two rows different (IS DISTINCT FROM)? */
static bool
column_changed(HeapTuple a, HeapTuple b, TupleDesc desc, int att)
{
	bool		null_a,
				null_b;
	Datum		va = heap_getattr(a, att, desc, &null_a);
	Datum		vb = heap_getattr(b, att, desc, &null_b);
	Form_pg_attribute attr = TupleDescAttr(desc, att - 1);

	if (null_a || null_b)
		return null_a != null_b;
	return !datumIsEqual(va, vb, attr->attbyval, attr->attlen);
}

Datum
publish_notify_job_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	old_row;
	HeapTuple	new_row;
	int			id_att;
	int			status_att;
	int			progress_att;
	char	   *progress;
	StringInfoData payload;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("publish._notify_job_change() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("publish._notify_job_change() must be fired AFTER UPDATE FOR EACH ROW")));

	desc = RelationGetDescr(trigdata->tg_relation);
	old_row = trigdata->tg_trigtuple;
	new_row = trigdata->tg_newtuple;
	status_att = column_number(desc, "status");
	progress_att = column_number(desc, "progress");
	if (!column_changed(old_row, new_row, desc, status_att) &&
		!column_changed(old_row, new_row, desc, progress_att))
		return PointerGetDatum(NULL);

	id_att = column_number(desc, "id");
	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"id\" : ");
	escape_json(&payload, SPI_getvalue(new_row, desc, id_att));
	appendStringInfoString(&payload, ", \"status\" : ");
	escape_json(&payload, SPI_getvalue(new_row, desc, status_att));
	progress = SPI_getvalue(new_row, desc, progress_att);	/* NULL if null */
	appendStringInfo(&payload, ", \"progress\" : %s}", progress ? progress : "null");
	Async_Notify(JOB_CHANNEL, payload.data);
	pfree(payload.data);
	return PointerGetDatum(NULL);
}
