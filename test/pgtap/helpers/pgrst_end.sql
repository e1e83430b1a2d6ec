-- pgrst_end.sql: the end of a request: COMMIT when the call succeeded,
-- otherwise ABORT (ROLLBACK), as PostgREST does; then back to the test's
-- own session (pgTAP runs as the superuser).
\if :r_ok
COMMIT;
\else
ROLLBACK;
\endif
RESET SESSION AUTHORIZATION;
