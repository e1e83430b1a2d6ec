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
//   /echo-S/TAG/...        answers status S (400, 403, 500, ...) echoing the
//                          request as a careless server would: the status
//                          line says "Rejected <Authorization>", the plain
//                          text body's first line the secret the
//                          Authorization carries (Basic: decoded) upper-
//                          and lower-cased, percent-encoded and
//                          JSON-quoted, the x-amz-security-token (also
//                          upper-cased) and the Authorization, and the
//                          lines after it the whole request
//   /echo-xml-S/TAG/...    the same as an S3 XML error of status S, whose
//                          Message holds the session token, the SigV4
//                          signature and the Authorization (an S3
//                          target's bucket "echo-xml-S")
//   /echo-redirect/TAG/... answers 307 to a Location carrying the secret
//                          as userinfo and the Authorization as a parameter
//   /switchable/TAG/...    as /ok, but 503 while TAG is down (below)
//   /slowput-MS/TAG/...    as /ok, but PUT requests whose path has "/tiles/"
//                          are answered after MS milliseconds; each is seen
//                          as "PUT path inflight=N", N the PUTs of TAG
//                          in flight when it arrived (itself included)
//   /nolength/TAG/...      as /ok, but a HEAD answer tells no Content-Length
//   /delete207/TAG/...     as /ok, but a DELETE with "Depth: infinity" (of a
//                          collection) answers 207 Multi-Status, a member
//                          kept (403), and removes nothing
//   /moveloss/TAG/...      as /ok, with WebDAV COPY and MOVE (Destination a
//                          URL under the same mode and TAG); the first MOVE
//                          under TAG is made, and its connection dropped
//                          without an answer
// GET /_requests/TAG lists the requests seen under TAG, one per line;
// POST /_down/TAG and POST /_up/TAG take /switchable/TAG down and up.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const objects = new Map();     // path -> {body, type, cache}
const counters = new Map();    // mode/tag -> requests seen
const seen = new Map();        // tag -> [lines]
const down = new Set();        // tags of /switchable that answer 503
const inflight = new Map();    // tag -> PUTs of /slowput in flight

// What a request carries: its Authorization, the secret in it (decoded
// from Basic auth, or the bearer token), its session token, and the whole
// request as text.
function credentialsOf(req) {
  const auth = req.headers.authorization || '';
  const token = req.headers['x-amz-security-token'] || '';
  let secret = '';
  const basic = /^Basic (.+)$/i.exec(auth);
  const bearer = /^Bearer (.+)$/i.exec(auth);
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    secret = decoded.slice(decoded.indexOf(':') + 1);
  } else if (bearer) {
    secret = bearer[1];
  }
  let raw = `${req.method} ${req.url} HTTP/${req.httpVersion}\n`;
  for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\n`;
  return { auth, token, secret, raw };
}

function xmlEscape(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);
}

// Answers the /echo-* modes.
function echo(req, res, mode) {
  const c = credentialsOf(req);
  if (mode === 'echo-redirect') {
    const userinfo = `echo:${encodeURIComponent(c.secret)}`;
    res.writeHead(307, { Location: `http://${userinfo}@127.0.0.2:${port}${req.url}?authorization=${encodeURIComponent(c.auth)}` });
    return res.end();
  }
  const xml = /^echo-xml-(\d{3})$/.exec(mode);
  if (xml) {
    const sig = (/Signature=([0-9a-f]+)/.exec(c.auth) || ['', ''])[1];
    const message = `session token ${c.token} (${c.token.toUpperCase()}); Signature=${sig}; ` +
                    `Authorization: ${c.auth}; ${req.method} ${req.url}`;
    res.writeHead(Number(xml[1]), { 'Content-Type': 'application/xml' });
    return res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>' +
                   `<Message>${xmlEscape(message)}</Message><Request>${xmlEscape(c.raw)}</Request>` +
                   '<RequestId>echo</RequestId></Error>\n');
  }
  const status = Number(/^echo-(\d{3})$/.exec(mode)[1]);
  const first = `rejected: secret ${c.secret.toUpperCase()} ${c.secret.toLowerCase()} ${encodeURIComponent(c.secret)} ` +
                `${JSON.stringify(c.secret)}; session token ${c.token} ${c.token.toUpperCase()}; ` +
                `authorization=${c.auth}; request=${req.method} ${req.url}`;
  res.writeHead(status, `Rejected ${c.auth}`, { 'Content-Type': 'text/plain; charset=utf-8' });
  return res.end(`${first}\n${c.raw}`);
}

http.createServer((req, res) => {
  const parts = req.url.split('/');
  const mode = parts[1] || '';
  const tag = parts[2] || '';
  if (mode === '_requests') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end((seen.get(tag) || []).join('\n') + '\n');
  }
  if (mode === '_down' || mode === '_up') {
    if (mode === '_down') down.add(tag); else down.delete(tag);
    res.writeHead(204);
    return res.end();
  }
  const key = `${mode}/${tag}`;
  const n = (counters.get(key) || 0) + 1;
  counters.set(key, n);
  if (!seen.has(tag)) seen.set(tag, []);
  const slow = /^slowput-(\d+)$/.exec(mode);
  const slowPut = slow && req.method === 'PUT' && req.url.includes('/tiles/');
  if (slowPut) {
    inflight.set(tag, (inflight.get(tag) || 0) + 1);
    seen.get(tag).push(`${req.method} ${req.url} inflight=${inflight.get(tag)}`);
  } else {
    seen.get(tag).push(`${req.method} ${req.url}`);
  }

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
    if (/^echo-(\d{3}|xml-\d{3}|redirect)$/.test(mode)) return echo(req, res, mode);
    if (mode === 'redirect') {
      res.writeHead(307, { Location: `http://127.0.0.2:${port}${req.url}` });
      return res.end();
    }
    const m = /^fail503-(\d+)$/.exec(mode);
    const mt = /^fail503get-(\d+)$/.exec(mode);
    let failing = (m && n <= Number(m[1])) || (mode === 'switchable' && down.has(tag));
    if (mt && req.method === 'GET' && req.url.includes('/tiles/')) {
      const nt = (counters.get(`${key}/tiles`) || 0) + 1;
      counters.set(`${key}/tiles`, nt);
      failing = nt <= Number(mt[1]);
    }
    if (failing) {
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      return res.end(m || mt ? `Service Unavailable (request ${n} of ${(m || mt)[1]} that fail)\n`
                             : 'Service Unavailable (down)\n');
    }
    const path = parts.slice(3).join('/');
    const store = `${tag}/${path}`;
    if (mode === 'moveloss' && (req.method === 'COPY' || req.method === 'MOVE')) {
      const o = objects.get(store);
      if (!o) { res.writeHead(404, { 'Content-Type': 'text/plain' }); return res.end('Not Found\n'); }
      const dparts = new URL(req.headers.destination).pathname.split('/');
      objects.set(`${dparts[2]}/${dparts.slice(3).join('/')}`, Object.assign({}, o));
      if (req.method === 'MOVE') {
        objects.delete(store);
        const moves = (counters.get(`${key}/moves`) || 0) + 1;
        counters.set(`${key}/moves`, moves);
        if (moves === 1) return req.socket.destroy();
      }
      res.writeHead(201);
      return res.end();
    }
    if (req.method === 'PUT') {
      objects.set(store, { body: Buffer.concat(chunks), type: req.headers['content-type'],
                           cache: req.headers['cache-control'] });
      if (slowPut) {
        return setTimeout(() => {
          inflight.set(tag, inflight.get(tag) - 1);
          res.writeHead(201);
          res.end();
        }, Number(slow[1]));
      }
      res.writeHead(201);
      return res.end();
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      const o = objects.get(store);
      if (!o) { res.writeHead(404, { 'Content-Type': 'text/plain' }); return res.end('Not Found\n'); }
      const h = mode === 'nolength' && req.method === 'HEAD' ? {} : { 'Content-Length': o.body.length };
      if (o.type) h['Content-Type'] = o.type;
      if (o.cache) h['Cache-Control'] = o.cache;
      res.writeHead(200, h);
      return res.end(req.method === 'GET' ? o.body : undefined);
    }
    if (req.method === 'DELETE' && mode === 'delete207' && req.headers.depth === 'infinity') {
      res.writeHead(207, { 'Content-Type': 'application/xml; charset=utf-8' });
      return res.end('<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:"><D:response>' +
                     `<D:href>${xmlEscape(req.url)}kept</D:href><D:status>HTTP/1.1 403 Forbidden</D:status>` +
                     '</D:response></D:multistatus>\n');
    }
    if (req.method === 'DELETE') {
      objects.delete(store);
      res.writeHead(204);
      return res.end();
    }
    res.writeHead(501, { 'Content-Type': 'text/plain' });
    res.end('Not Implemented\n');
  });
}).listen(port, '127.0.0.1');
