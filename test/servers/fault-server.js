// fault-server.js: an HTTP PUT server that misbehaves on request, to test
// retries, timeouts and cut transfers.  Objects live in memory.
//
//   node fault-server.js PORT
//
// The first path segment picks the behaviour, the second names a scenario
// (its own counter):
//   /ok/TAG/...            a plain HTTP PUT server (PUT, GET, HEAD; no COPY: 501)
//   /fail503-N/TAG/...     the first N requests under /fail503-N/TAG answer
//                          503, then it behaves as /ok
//   /fail503get-N/TAG/...  the first N GET requests under it whose path has
//                          "/tiles/" answer 503, then it behaves as /ok
//   /hang/TAG/...          reads the request, then never answers
//   /hangget/TAG/...       as /ok, but GET requests whose path has "/tiles/"
//                          never answer
//   /cut/TAG/...           reads part of the request body, then drops the connection
//   /redirect/TAG/...      answers 307 to the same path on another host (127.0.0.2)
//   /bearer/TAG/...        as /ok, for requests with "Authorization: Bearer
//                          bearer-token-6a0f2c"; 401 for others
// GET /_requests/TAG lists the requests seen under TAG, one per line.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const objects = new Map();     // path -> {body, type, cache}
const counters = new Map();    // mode/tag -> requests seen
const seen = new Map();        // tag -> [lines]

http.createServer((req, res) => {
  const parts = req.url.split('/');
  const mode = parts[1] || '';
  const tag = parts[2] || '';
  if (mode === '_requests') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end((seen.get(tag) || []).join('\n') + '\n');
  }
  const key = `${mode}/${tag}`;
  const n = (counters.get(key) || 0) + 1;
  counters.set(key, n);
  if (!seen.has(tag)) seen.set(tag, []);
  seen.get(tag).push(`${req.method} ${req.url}`);

  if (mode === 'cut') {
    req.once('data', () => req.socket.destroy());
    req.on('end', () => req.socket.destroy());
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (mode === 'hang') return;                      // never answer
    if (mode === 'hangget' && req.method === 'GET' && req.url.includes('/tiles/')) return;
    if (mode === 'bearer' && req.headers.authorization !== 'Bearer bearer-token-6a0f2c') {
      res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Bearer' });
      return res.end('Unauthorized: a bearer token is required\n');
    }
    if (mode === 'redirect') {
      res.writeHead(307, { Location: `http://127.0.0.2:${port}${req.url}` });
      return res.end();
    }
    const m = /^fail503-(\d+)$/.exec(mode);
    const mt = /^fail503get-(\d+)$/.exec(mode);
    let failing = m && n <= Number(m[1]);
    if (mt && req.method === 'GET' && req.url.includes('/tiles/')) {
      const nt = (counters.get(`${key}/tiles`) || 0) + 1;
      counters.set(`${key}/tiles`, nt);
      failing = nt <= Number(mt[1]);
    }
    if (failing) {
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      return res.end(`Service Unavailable (request ${n} of ${(m || mt)[1]} that fail)\n`);
    }
    const path = parts.slice(3).join('/');
    const store = `${tag}/${path}`;
    if (req.method === 'PUT') {
      objects.set(store, { body: Buffer.concat(chunks), type: req.headers['content-type'],
                           cache: req.headers['cache-control'] });
      res.writeHead(201);
      return res.end();
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      const o = objects.get(store);
      if (!o) { res.writeHead(404, { 'Content-Type': 'text/plain' }); return res.end('Not Found\n'); }
      const h = { 'Content-Length': o.body.length };
      if (o.type) h['Content-Type'] = o.type;
      if (o.cache) h['Cache-Control'] = o.cache;
      res.writeHead(200, h);
      return res.end(req.method === 'GET' ? o.body : undefined);
    }
    res.writeHead(501, { 'Content-Type': 'text/plain' });
    res.end('Not Implemented\n');
  });
}).listen(port, '127.0.0.1');
