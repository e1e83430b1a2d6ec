/*-------------------------------------------------------------------------
 *
 * utility_hook.c
 *	  Stop a database's worker before a command that needs the database
 *	  to itself; wake it after a command that changes what it can find.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME, ALTER DATABASE ... SET
 * TABLESPACE and CREATE DATABASE ... TEMPLATE fail with "database is being
 * accessed by other users" while any backend is connected to the database,
 * and PostgreSQL only signals autovacuum workers itself.  Before such a
 * command runs we keep the launcher out of the database and send its worker
 * SIGTERM; PostgreSQL then waits (up to 5 s) for it to go.  A job the worker
 * was running is queued again when the worker comes back.  When the command
 * ends, successfully or not, the launcher is told to look again.
 *
 * CREATE DATABASE and ALTER DATABASE wake the launcher at commit (the
 * databases it serves may have changed).  Three statements wake the
 * database's worker at commit: COMMIT PREPARED (a
 * prepared transaction's jobs become visible, and PREPARE woke nobody),
 * DROP EXTENSION publish (the worker notices and exits) and ALTER
 * EXTENSION publish (a worker waiting for a version it knows runs the
 * queue).  They would otherwise wait for a full safety sweep.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "publish.h"
#include "bgw/bgw.h"
#include "ipc/ipc.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * The database a utility statement needs exclusive use of, or InvalidOid.
 * Only when the role owns it (a superuser does): each of these commands
 * then checks ownership itself, and one that is going to be refused must
 * not stop the database's jobs.  (A template that is not the role's has no
 * worker to stop.)
 */
static Oid
database_needing_exclusive_use(Node *parsetree)
{
	const char *dbname = NULL;
	Oid			dboid;
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) parsetree)->subname;
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *def = lfirst_node(DefElem, lc);

				if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
					dbname = defGetString(def);
			}
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *def = lfirst_node(DefElem, lc);

				if (strcmp(def->defname, "tablespace") == 0)
					dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
			}
			break;
		default:
			break;
	}
	if (dbname == NULL)
		return InvalidOid;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

static void
call_previous(PlannedStmt *pstmt, const char *queryString,
			  bool readOnlyTree, ProcessUtilityContext context,
			  ParamListInfo params, QueryEnvironment *queryEnv,
			  DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Does this statement change what the database's worker can find, without
 * a wake-up of its own?  COMMIT PREPARED makes the jobs of a prepared
 * transaction visible (a PREPARE wakes nobody), after DROP EXTENSION
 * publish the worker should notice and exit, and after ALTER EXTENSION
 * publish (UPDATE) a worker that waited for objects of a version it knows
 * may find them.  COMMIT PREPARED always runs in the database of the
 * prepared transaction.
 */
static bool
wakes_worker(Node *parsetree)
{
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_TransactionStmt:
			return ((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED;
		case T_DropStmt:
			if (((DropStmt *) parsetree)->removeType != OBJECT_EXTENSION)
				return false;
			foreach(lc, ((DropStmt *) parsetree)->objects)
			{
				if (strcmp(strVal(lfirst(lc)), PUBLISH_EXTENSION_NAME) == 0)
					return true;
			}
			return false;
		case T_AlterExtensionStmt:
			return strcmp(((AlterExtensionStmt *) parsetree)->extname,
						  PUBLISH_EXTENSION_NAME) == 0;
		default:
			return false;
	}
}

static void
resume_database_callback(int code, Datum arg)
{
	publish_shmem_resume_database(DatumGetObjectId(arg));
}

static void
publish_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = InvalidOid;

	if (publish_shmem_ready())
	{
		dboid = database_needing_exclusive_use(pstmt->utilityStmt);

		/*
		 * The launcher scans pg_database when woken: a new database (maybe
		 * copied from one with the extension), or one that now accepts
		 * connections, is served at once, not at its backstop timer.
		 */
		if (IsA(pstmt->utilityStmt, CreatedbStmt) || IsA(pstmt->utilityStmt, AlterDatabaseStmt))
			publish_wake_launcher_at_commit();
	}

	if (!OidIsValid(dboid))
	{
		bool		wake = publish_shmem_ready() && wakes_worker(pstmt->utilityStmt);

		call_previous(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

		/*
		 * At the commit of the statement's transaction, when the extension is
		 * (or was) here: a database without it has no worker to wake.
		 */
		if (wake && (IsA(pstmt->utilityStmt, DropStmt) ||
					 OidIsValid(get_extension_oid(PUBLISH_EXTENSION_NAME, true))))
			publish_wake_all_at_commit();
		return;
	}

	publish_shmem_pause_database(dboid);
	PG_ENSURE_ERROR_CLEANUP(resume_database_callback, ObjectIdGetDatum(dboid));
	{
		call_previous(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_END_ENSURE_ERROR_CLEANUP(resume_database_callback, ObjectIdGetDatum(dboid));
	publish_shmem_resume_database(dboid);
}

void
publish_install_utility_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = publish_ProcessUtility;
}
