-- 15c_wake_one.sql: a commit that queues one job wakes one worker of the
-- database, not every worker to race for it (publish_shmem_wake_database):
-- with both workers asleep, one runs the job and the other sleeps on.
-- (Jobs left queued by a claim wake the next worker: 16c_cancel_in_group
-- queues three at once, and both workers claim theirs.)
--
-- A worker's pg_stat_activity.state_change moves whenever it starts a
-- transaction of its own (job_txn_begin reports the activity); an empty
-- one answering PostgreSQL's cache catch-up signal does not report.
--
-- Project wake-one; environment tap-wake under :storage/wake.

DELETE FROM publish.projects WHERE slug = 'wake-one';

SELECT plan(2);

SELECT :'storage' || '/wake' AS root \gset
SELECT publish.set_storage_target('tap-wake', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('wake-one', 3) \g /dev/null

-- One try: with both workers asleep, another session publishes; how many
-- workers ran a transaction of their own until the job ended.  Worker 0's
-- timed sweep may fall in the window (it then counts, and worker 1 takes
-- the job), so the test tries up to three times: with every latch set,
-- every try sees both.
SELECT test_helpers.session_open('wake') \g /dev/null
CREATE TEMP TABLE before (pid int, state_change timestamptz);
CREATE FUNCTION pg_temp.workers_woken_by_one_job(tries int) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
	woke bigint;
	job uuid;
BEGIN
	FOR i IN 1 .. tries LOOP
		IF NOT test_helpers.wait_until($c$(SELECT count(*) FROM pg_stat_activity
		                                    WHERE datname = current_database() AND application_name = 'publish worker'
		                                      AND state = 'idle' AND wait_event_type = 'Extension'
		                                      AND state_change < clock_timestamp() - interval '0.2 s') = 2$c$, '20 s') THEN
			RAISE EXCEPTION 'the database''s two workers are not asleep';
		END IF;
		DELETE FROM before;
		INSERT INTO before SELECT pid, state_change FROM pg_stat_activity
		 WHERE datname = current_database() AND application_name = 'publish worker';
		PERFORM test_helpers.dblink_exec('wake', $q$DO $d$ BEGIN PERFORM publish.publish_version('wake-one', 1, 'tap-wake'); END $d$$q$);
		SELECT q.id INTO job FROM publish.job_queue q JOIN publish.projects p ON p.id = q.project_id
		 WHERE p.slug = 'wake-one' ORDER BY q.created_at DESC LIMIT 1;
		IF (test_helpers.wait_job(job, '20 s')).status <> 'completed' THEN
			RAISE EXCEPTION 'job % did not complete', job;
		END IF;
		PERFORM pg_stat_clear_snapshot();
		SELECT count(*) FILTER (WHERE a.state_change IS DISTINCT FROM b.state_change) INTO woke
		  FROM before b JOIN pg_stat_activity a USING (pid);
		EXIT WHEN woke = 1;
	END LOOP;
	RETURN woke;
END $f$;

SELECT is(pg_temp.workers_woken_by_one_job(3), 1::bigint, 'one worker woke for it; the other slept on');
SELECT is(count(*) FILTER (WHERE status = 'completed'), count(*), '... and every job published completed')
  FROM publish.job_queue q JOIN publish.projects p ON p.id = q.project_id WHERE p.slug = 'wake-one';
SELECT test_helpers.session_close('wake') \g /dev/null

DELETE FROM publish.projects WHERE slug = 'wake-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-wake';

SELECT * FROM finish();
