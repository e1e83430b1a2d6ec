// pickup.js: pickup latency (enqueuing transaction's commit -> job picked up)
// of publish, graphile-worker and pg-boss, one job at a time with the worker
// idle, measured from two starting points (see below).  Run by bench/peers/run.sh, which starts the cluster
// (track_commit_timestamp = on) and creates the databases; see
// bench/peers/README.md for the method.
//
//   node pickup.js OUTDIR
//
// Environment: PGHOST, PGPORT, PGUSER (the private cluster); BENCH_PEERS_N
// (2000 jobs per system), BENCH_PEERS_POLL_N (100 jobs of pg-boss with its
// default polling worker), BENCH_PEERS_SLEEP_MS (10 ms of idle worker before
// each enqueue).
//
// Every enqueue is one transaction (in mode async with synchronous_commit =
// off, set on the enqueuing connection) that also records pg_current_xact_id()
// in the side table bench_enq; the commit time is then
// pg_xact_commit_timestamp(xid(x)).  The start of a job is:
//   publish: job_queue.started_at (clock_timestamp() in the worker's claim);
//   graphile-worker, pg-boss: the wall clock in the task handler's first line
//     (Node, performance.timeOrigin + performance.now()), corrected by the
//     offset between the Node and PostgreSQL clocks measured at the start.
// Second measure, from the moment the enqueuing client's COMMIT returned
// (Node's clock, right after the query's promise resolves; for publish
// corrected by the same offset, since started_at is PostgreSQL's clock):
// it leaves out the enqueuer's WAL flush, which the commit timestamp (taken
// before the flush) includes, and includes the reply's trip to the client.
// It can be negative: the worker may start the job before the client has
// read the server's reply.
'use strict'

const fs = require('fs')
const path = require('path')
const { performance } = require('perf_hooks')
const { Client } = require('pg')

const OUT = process.argv[2] || '.'
const N = +(process.env.BENCH_PEERS_N || 2000)
const POLL_N = +(process.env.BENCH_PEERS_POLL_N || 100)
const SLEEP_MS = +(process.env.BENCH_PEERS_SLEEP_MS || 10)
// durable: the enqueuing transaction commits as configured (synchronous_commit
// = on: its WAL flush lies between its commit timestamp and the moment the
// job becomes visible); async: it commits with synchronous_commit = off, so
// the job is visible as soon as the commit record is written, and the
// interval holds only the wake-up and the claim.
const MODES = (process.env.BENCH_PEERS_MODES || 'durable async').split(/\s+/).filter(Boolean)
const TIMEOUT_MS = 30000

const nowMs = () => performance.timeOrigin + performance.now()
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const conn = db => ({ host: process.env.PGHOST, port: +process.env.PGPORT, user: process.env.PGUSER || 'postgres', database: db })

// Offset (ms) to add to a Node timestamp to get PostgreSQL's clock: the
// sample with the shortest round trip, assuming the server read its clock
// half-way.
async function clockOffset (client) {
  let best = null
  for (let i = 0; i < 50; i++) {
    const t0 = nowMs()
    const r = await client.query('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t')
    const t1 = nowMs()
    const rtt = t1 - t0
    if (best === null || rtt < best.rtt) best = { rtt, offset: parseFloat(r.rows[0].t) - (t0 + t1) / 2 }
  }
  return best
}

// The enqueuing connection: in mode async its commits do not wait for the
// WAL flush.
async function enqueuer (db, asyncCommit) {
  const c = new Client(conn(db)); await c.connect()
  if (asyncCommit) await c.query('SET synchronous_commit = off')
  return c
}

function stats (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = p => { // percentile_cont
    const pos = (s.length - 1) * p
    const lo = Math.floor(pos); const hi = Math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
  }
  return { n: s.length, min: s[0], median: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1], mean: s.reduce((a, b) => a + b, 0) / s.length }
}

// A promise resolved by the next job's handler, with a timeout.
function nextStart () {
  let resolve
  const p = new Promise((res, rej) => {
    resolve = res
    setTimeout(() => rej(new Error(`no job started within ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref()
  })
  return { p, resolve }
}

// Commit times (PostgreSQL epoch ms) of bench_enq, by seq.
async function commitTimes (client) {
  const r = await client.query(`SELECT seq, extract(epoch FROM pg_xact_commit_timestamp(xid(x))) * 1000 AS c
                                  FROM bench_enq ORDER BY seq`)
  const m = new Map()
  for (const row of r.rows) {
    if (row.c === null) throw new Error('no commit timestamp: is track_commit_timestamp on?')
    m.set(row.seq, parseFloat(row.c))
  }
  return m
}

function latencies (commits, starts, offset) {
  const out = []
  for (const [seq, start] of starts) out.push(start + offset - commits.get(seq))
  return out
}

// Start (Node clock) minus the moment the client's COMMIT returned (Node clock).
function fromReturn (returned, starts) {
  const out = []
  for (const [seq, start] of starts) out.push(start - returned.get(seq))
  return out
}

async function benchPublish (asyncCommit) {
  const c = await enqueuer('bench', asyncCommit)
  await c.query('TRUNCATE bench_enq')
  const returned = new Map()
  // warm-up: starts the worker, fills caches
  for (let i = 0; i < 20; i++) await publishOne(c, -1 - i, returned)
  await c.query('DELETE FROM bench_enq')
  const off = await clockOffset(c)
  for (let i = 1; i <= N; i++) await publishOne(c, i, returned)
  const off2 = await clockOffset(c)
  const r = await c.query(`SELECT e.seq, extract(epoch FROM q.started_at - pg_xact_commit_timestamp(xid(e.x))) * 1000 AS ms,
                                  extract(epoch FROM q.started_at) * 1000 AS started,
                                  extract(epoch FROM q.completed_at - q.started_at) * 1000 AS run_ms, q.status
                             FROM bench_enq e JOIN publish.job_queue q ON q.id = e.job_id ORDER BY e.seq`)
  await c.end()
  const bad = r.rows.filter(x => x.status !== 'completed').length
  if (bad) throw new Error(`publish: ${bad} job(s) did not complete`)
  // started_at is PostgreSQL's clock, the return of COMMIT Node's
  const ret = r.rows.map(x => parseFloat(x.started) - off.offset - returned.get(x.seq))
  return { ms: r.rows.map(x => parseFloat(x.ms)), ret, run: stats(r.rows.map(x => parseFloat(x.run_ms))), offset: off, offsetEnd: off2 }
}

// One publish request, in its own (autocommitted) transaction: the query
// returns once its COMMIT is done.
async function publishOne (c, seq, returned) {
  const r = await c.query(`INSERT INTO bench_enq (seq, job_id, x)
                           SELECT $1, (publish.publish_version('bench', 1, 'bench')).id, pg_current_xact_id()
                           RETURNING job_id`, [seq])
  returned.set(seq, nowMs())
  const id = r.rows[0].job_id
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) { // wait until the job is finished (its final commit done)
    const s = await c.query('SELECT status FROM publish.job_queue WHERE id = $1', [id])
    if (s.rows[0].status === 'completed' || s.rows[0].status === 'failed') break
    if (Date.now() > deadline) throw new Error('publish job not finished in time')
    await sleep(0.5)
  }
  await sleep(SLEEP_MS)
}

async function benchGraphile (asyncCommit) {
  const { run, Logger } = require('graphile-worker')
  const c = await enqueuer('gw', asyncCommit)
  await c.query('TRUNCATE bench_enq')
  const starts = new Map()
  let waiter = null
  const pool = new (require('pg').Pool)({ ...conn('gw'), max: 4 })
  pool.on('error', e => console.error('graphile-worker pool:', e.message))
  const runner = await run({
    pgPool: pool,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: new Logger(() => () => {}),
    taskList: {
      noop: async (payload) => {
        const t = nowMs()
        starts.set(payload.seq, t)
        if (waiter) waiter.resolve(t)
      }
    }
  })
  const off = await clockOffset(c)
  const returned = new Map()
  const one = async (seq) => {
    waiter = nextStart()
    await c.query('BEGIN')
    await c.query("SELECT graphile_worker.add_job('noop', json_build_object('seq', $1::int))", [seq])
    await c.query('INSERT INTO bench_enq (seq, x) VALUES ($1, pg_current_xact_id())', [seq])
    await c.query('COMMIT')
    returned.set(seq, nowMs())
    await waiter.p
    await sleep(SLEEP_MS)
  }
  for (let i = 0; i < 20; i++) await one(-1 - i)
  for (let i = 1; i <= N; i++) await one(i)
  await sleep(50)
  await runner.stop()
  await pool.end()
  const commits = await commitTimes(c)
  for (const k of [...starts.keys()]) if (k < 0) starts.delete(k)
  const off2 = await clockOffset(c)
  await c.end()
  return { ms: latencies(commits, starts, off.offset), ret: fromReturn(returned, starts), offset: off, offsetEnd: off2 }
}

async function benchBoss (n, notify, asyncCommit) {
  const PgBoss = require('pg-boss')
  const c = await enqueuer('boss', asyncCommit)
  await c.query('TRUNCATE bench_enq')
  const boss = new PgBoss({ ...conn('boss'), max: 4 })
  boss.on('error', e => console.error('pg-boss:', e.message))
  await boss.start()
  const queue = 'noop'
  if (!(await boss.getQueue(queue))) await boss.createQueue(queue)
  const starts = new Map()
  let waiter = null
  const workerId = await boss.work(queue, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async ([job]) => {
    const t = nowMs()
    starts.set(job.data.seq, t)
    if (waiter) waiter.resolve(t)
  })
  const db = { executeSql: (text, values) => c.query(text, values) }
  const off = await clockOffset(c)
  const returned = new Map()
  const one = async (seq) => {
    waiter = nextStart()
    await c.query('BEGIN')
    await boss.send(queue, { seq }, { db })
    await c.query('INSERT INTO bench_enq (seq, x) VALUES ($1, pg_current_xact_id())', [seq])
    await c.query('COMMIT')
    returned.set(seq, nowMs())
    if (notify) boss.notifyWorker(workerId)
    await waiter.p
    await sleep(SLEEP_MS)
  }
  for (let i = 0; i < (notify ? 20 : 3); i++) await one(-1 - i)
  for (let i = 1; i <= n; i++) await one(i)
  await sleep(50)
  await boss.stop({ graceful: true, wait: true, timeout: 5000 })
  const commits = await commitTimes(c)
  for (const k of [...starts.keys()]) if (k < 0) starts.delete(k)
  const off2 = await clockOffset(c)
  await c.end()
  return { ms: latencies(commits, starts, off.offset), ret: fromReturn(returned, starts), offset: off, offsetEnd: off2 }
}

async function main () {
  const results = {}
  const save = (name, r) => {
    fs.writeFileSync(path.join(OUT, `${name}.dat`), r.ms.map(x => x.toFixed(4)).join('\n') + '\n')
    fs.writeFileSync(path.join(OUT, `${name}-returned.dat`), r.ret.map(x => x.toFixed(4)).join('\n') + '\n')
    results[name] = { ...stats(r.ms), returned: stats(r.ret), run: r.run, offset: r.offset, offsetEnd: r.offsetEnd }
    const s = results[name]
    const t = s.returned
    console.log(`  ${name}: n=${s.n} from the commit timestamp: median ${s.median.toFixed(3)} ms, p90 ${s.p90.toFixed(3)}, p99 ${s.p99.toFixed(3)}, max ${s.max.toFixed(3)}` +
      (r.offset ? ` (clock offset ${r.offset.offset.toFixed(3)} ms at start, ${r.offsetEnd.offset.toFixed(3)} ms at end, rtt ${r.offset.rtt.toFixed(3)} ms)` : ''))
    console.log(`  ${name}: from the return of COMMIT: median ${t.median.toFixed(3)} ms, p90 ${t.p90.toFixed(3)}, p99 ${t.p99.toFixed(3)}, max ${t.max.toFixed(3)}, min ${t.min.toFixed(3)}`)
  }
  for (const mode of MODES) {
    const asyncCommit = mode === 'async'
    const sfx = asyncCommit ? '-async' : ''
    const how = asyncCommit ? ' (enqueued with synchronous_commit = off)' : ''
    console.log(`== publish${how}: ${N} jobs`); save('publish' + sfx, await benchPublish(asyncCommit))
    console.log(`== graphile-worker${how}: ${N} jobs`); save('graphile-worker' + sfx, await benchGraphile(asyncCommit))
    console.log(`== pg-boss, woken by the enqueuer (notifyWorker after COMMIT)${how}: ${N} jobs`); save('pg-boss-notify' + sfx, await benchBoss(N, true, asyncCommit))
    if (POLL_N > 0 && !asyncCommit) {
      console.log(`== pg-boss, polling every 0.5 s (its minimum): ${POLL_N} jobs`); save('pg-boss-poll', await benchBoss(POLL_N, false, false))
    }
  }
  fs.writeFileSync(path.join(OUT, 'summary.json'), JSON.stringify(results, null, 2) + '\n')
}

main().catch(e => { console.error(e); process.exit(1) })
