// s3-sigv4-proxy.js: an S3 front for s3rver that checks requests the way
// AWS does, with an independent signer (the npm package aws4), and passes
// good ones on to s3rver (which itself accepts anything).
//
//   node s3-sigv4-proxy.js PORT UPSTREAM_PORT ACCESS_KEY_ID SECRET_ACCESS_KEY [ACCESS_LOG]
//
// With ACCESS_LOG, each request it passes on is a line there:
// "METHOD PATH" and, for a CopyObject, " copy-from SOURCE" (the tests count
// the requests of a publish with it).
//
// Refuses, with S3's XML error body:
//   403 AccessDenied           no Authorization header (anonymous)
//   403 InvalidAccessKeyId     an unknown key id
//   403 AccessDenied           an x-amz-* header that is not signed
//   403 SignatureDoesNotMatch  a signature aws4 does not reproduce
//   400 InvalidRequest         no x-amz-content-sha256 header
//   400 XAmzContentSHA256Mismatch  a body whose SHA-256 is not that header
//
// A CopyObject (a signed PUT with x-amz-copy-source) whose destination path
// has a segment "copy-answer-pad" is passed on and answered 200 with 20 KB
// of whitespace before s3rver's answer, as S3 keeps a long copy's
// connection alive; one under "copy-answer-nocode" is not passed on and is
// answered 200 with an <Error> that has no <Code>.  A DeleteObjects of keys
// under "delete-answer-error" is not passed on and is answered 200 with an
// AccessDenied <Error> for its first key.
'use strict';
const http = require('http');
const crypto = require('crypto');
const aws4 = require('aws4');

const fs = require('fs');

const [port, upstreamPort, keyId, secret, accessLog] = process.argv.slice(2);
const log = accessLog ? fs.createWriteStream(accessLog, { flags: 'a' }) : null;

function s3Error(res, status, code, message) {
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message><RequestId>proxy</RequestId></Error>`;
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function check(req, body) {
  const auth = req.headers.authorization;
  if (!auth) return [403, 'AccessDenied', 'Access Denied'];
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return [400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed'];
  const [, key, , region, service, signedList, signature] = m;
  if (key !== keyId) return [403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
  const signed = signedList.split(';');
  for (const h of Object.keys(req.headers)) {
    if (h.startsWith('x-amz-') && !signed.includes(h))
      return [403, 'AccessDenied', `There were headers present in the request which were not signed: ${h}`];
  }
  const contentSha = req.headers['x-amz-content-sha256'];
  if (!contentSha) return [400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256'];
  if (contentSha !== 'UNSIGNED-PAYLOAD' &&
      contentSha !== crypto.createHash('sha256').update(body).digest('hex'))
    return [400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed."];

  const headers = {};
  for (const h of signed) headers[h] = req.headers[h] === undefined ? '' : req.headers[h];
  const signer = new aws4.RequestSigner({
    method: req.method, host: req.headers.host, path: req.url, headers,
    service, region, doNotModifyHeaders: true,
  }, { accessKeyId: keyId, secretAccessKey: secret });
  signer.datetime = req.headers['x-amz-date'];
  if (signer.signature() !== signature)
    return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'];
  return null;
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const bad = check(req, body);
    if (bad) return s3Error(res, ...bad);
    if (log) {
      const src = req.headers['x-amz-copy-source'];
      log.write(`${req.method} ${req.url}${src ? ' copy-from ' + src : ''}\n`);
    }
    const copyAnswer = req.headers['x-amz-copy-source'] &&
      (/\/(copy-answer-(?:pad|nocode))\//.exec(req.url) || [])[1];
    if (copyAnswer === 'copy-answer-nocode') {
      res.writeHead(200, { 'Content-Type': 'application/xml' });
      return res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Message>the copy broke off</Message></Error>');
    }
    if (req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url) && body.includes('/delete-answer-error/')) {
      const key = /<Key>([^<]*)<\/Key>/.exec(body.toString())[1];
      res.writeHead(200, { 'Content-Type': 'application/xml' });
      return res.end('<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult><Error>' +
                     `<Key>${key}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>`);
    }
    const headers = Object.assign({}, req.headers);
    delete headers.authorization;     // s3rver gets an anonymous request
    delete headers['x-amz-content-sha256'];
    headers['content-length'] = body.length;
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (ur) => {
      if (copyAnswer === 'copy-answer-pad' && ur.statusCode === 200) {
        const h = Object.assign({}, ur.headers);
        delete h['content-length'];
        res.writeHead(200, h);
        res.write(' '.repeat(10000) + '\n' + ' '.repeat(10000));
      } else {
        res.writeHead(ur.statusCode, ur.headers);
      }
      ur.pipe(res);
    });
    up.on('error', (e) => s3Error(res, 502, 'BadGateway', e.message));
    up.end(body);
  });
}).listen(Number(port), '127.0.0.1');
