// The map viewer (demo/viewer) in headless Chromium, against a release that
// publish has just published: every overlay of release.json is drawn, by
// type and key, each shows its name when clicked, the tiles loaded and none
// is broken; then a screenshot.
//
//   node --test test/browser/viewer.test.mjs
//
// Environment:
//   VIEWER_MAPS      the storage root of the file:// target published to;
//                    served at /maps/ beside demo/viewer at /viewer/ by a
//                    static server of this test (127.0.0.1, a free port)
//   VIEWER_RELEASE   release.json under it (default production/campus/release.json)
//   VIEWER_URL       instead of the two above: a viewer page already served,
//                    with its ?release= (e.g. the one ./scripts/demo.sh prints)
//   VIEWER_SCREENSHOT  where the screenshot goes (default docs/img/viewer.png)
//   VIEWER_TMPDIR    where Chromium's fresh profile is made (default TMPDIR)
//
// Chromium is Debian's (/usr/bin/chromium, or CHROMIUM), driven by
// playwright-core, which downloads no browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VIEWER_DIR = path.join(ROOT, 'demo/viewer');
const SCREENSHOT = process.env.VIEWER_SCREENSHOT || path.join(ROOT, 'docs/img/viewer.png');
const TYPES = ['marker', 'label', 'polyline', 'polygon', 'image'];

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml',
};

// GET /viewer/... from demo/viewer and /maps/... from the storage root
function staticServer(mapsDir) {
  const mounts = { '/viewer/': VIEWER_DIR, '/maps/': mapsDir };
  return http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    for (const [prefix, dir] of Object.entries(mounts)) {
      if (!urlPath.startsWith(prefix)) continue;
      let file = path.join(dir, urlPath.slice(prefix.length));
      if (!file.startsWith(dir + path.sep) && file !== dir) break;
      if (urlPath.endsWith('/')) file = path.join(file, 'index.html');
      fs.readFile(file, (err, data) => {
        if (err) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'Content-Type': CONTENT_TYPES[path.extname(file)] || 'application/octet-stream' });
        res.end(data);
      });
      return;
    }
    res.writeHead(404).end();
  });
}

let server, context, page, pageUrl, release;
const pageErrors = [];
const tileResponses = [];

before(async () => {
  if (process.env.VIEWER_URL) {
    pageUrl = process.env.VIEWER_URL;
  } else {
    const maps = process.env.VIEWER_MAPS;
    assert.ok(maps, 'VIEWER_MAPS (or VIEWER_URL) is set');
    server = staticServer(path.resolve(maps));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const rel = process.env.VIEWER_RELEASE || 'production/campus/release.json';
    pageUrl = `http://127.0.0.1:${server.address().port}/viewer/?release=/maps/${rel}`;
  }
  const profile = fs.mkdtempSync(path.join(process.env.VIEWER_TMPDIR || os.tmpdir(), 'viewer-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 760 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('response', (r) => {
    if (/\/tiles\/v\d+\//.test(r.url())) tileResponses.push(r);
  });
  await page.goto(pageUrl);
  await page.waitForSelector('body[data-state]', { timeout: 20000 });
  const state = await page.getAttribute('body', 'data-state');
  const panel = await page.locator('.publish-panel').textContent();
  assert.equal(state, 'ready', `the viewer shows the release (panel: ${panel})`);
  await page.waitForSelector('body[data-tiles]', { timeout: 20000 });
  release = await page.evaluate(() => window.publishViewer.release);
});

after(async () => {
  if (context) await context.close();
  if (server) server.close();
});

test('no script error on the page', () => {
  assert.deepEqual(pageErrors, []);
});

test('every overlay of release.json is drawn, by type and key', async () => {
  assert.ok(release.overlays.length > 0, 'the release has overlays');
  const drawn = await page.evaluate(() =>
    [...document.querySelectorAll('[data-overlay-key]')].map((e) => {
      const r = e.getBoundingClientRect();
      return { key: e.dataset.overlayKey, type: e.dataset.overlayType, tag: e.tagName.toLowerCase(),
               classes: e.getAttribute('class') || '', w: r.width, h: r.height,
               d: e.getAttribute('d') || '', text: e.textContent };
    }));
  for (const type of TYPES) {
    const want = release.overlays.filter((o) => o.type === type).map((o) => o.key).sort();
    const got = drawn.filter((d) => d.type === type).map((d) => d.key).sort();
    assert.deepEqual(got, want, `${type} overlays drawn`);
  }
  assert.equal(drawn.length, release.overlays.length, 'one element per overlay');
  // each drawn as what it is, with a size on the page
  for (const d of drawn) {
    const o = release.overlays.find((x) => x.key === d.key);
    switch (d.type) {
      case 'marker':
        assert.ok(d.tag === 'img' && d.classes.includes('leaflet-marker-icon') && d.w > 0, `marker ${d.key}`);
        break;
      case 'label':
        assert.ok(d.classes.includes('publish-label') && d.text === o.name, `label ${d.key} shows its name`);
        break;
      case 'polyline':
      case 'polygon':
        assert.ok(d.tag === 'path' && /^M/.test(d.d) && (d.w > 0 || d.h > 0), `${d.type} ${d.key} is a path`);
        if (d.type === 'polygon') assert.ok(/z/i.test(d.d), `polygon ${d.key} is closed`);
        break;
      case 'image':
        assert.ok(d.tag === 'img' && d.classes.includes('leaflet-image-layer') && d.w > 0 && d.h > 0,
                  `image ${d.key}`);
        break;
    }
  }
  // a polygon with a hole, and a MultiPolygon, are drawn with every ring
  for (const o of release.overlays.filter((x) => x.type === 'polygon')) {
    const rings = o.geometry.type === 'Polygon' ? o.geometry.coordinates.length
      : o.geometry.coordinates.reduce((n, p) => n + p.length, 0);
    const d = drawn.find((x) => x.key === o.key).d;
    assert.equal((d.match(/z/gi) || []).length, rings, `polygon ${o.key}: ${rings} rings`);
  }
});

test('the tiles loaded, none broken', async () => {
  const ts = release.tileset;
  assert.ok(ts, 'the release has a tileset');
  assert.equal(await page.getAttribute('body', 'data-tiles'), 'loaded');
  const tiles = await page.evaluate(() => ({
    zoom: window.publishViewer.map.getZoom(),
    imgs: [...document.querySelectorAll('img.leaflet-tile')].map((i) => ({
      src: i.src, loaded: i.classList.contains('leaflet-tile-loaded'), complete: i.complete,
      w: i.naturalWidth, h: i.naturalHeight,
    })),
    errors: window.publishViewer.tileErrors,
  }));
  assert.equal(tiles.errors, 0, 'no tileerror');
  // the whole pyramid is in view: every tile of the zoom shown
  const z = Math.min(ts.max_zoom, Math.max(ts.min_zoom, Math.round(tiles.zoom)));
  assert.equal(tiles.imgs.length, 4 ** z, `all ${4 ** z} tiles of zoom ${z}`);
  for (const t of tiles.imgs) {
    assert.ok(t.loaded && t.complete && t.w === ts.tile_size && t.h === ts.tile_size, `tile ${t.src} loaded`);
    assert.match(t.src, new RegExp(`/tiles/v${release.version}/${z}/\\d+/\\d+\\.${ts.format}$`));
  }
  const statuses = tileResponses.map((r) => r.status());
  assert.ok(statuses.length >= tiles.imgs.length && statuses.every((s) => s === 200),
            `tile responses: ${statuses.join(' ')}`);
});

test('each overlay shows its name when clicked', async () => {
  // a real click on a marker
  const m = release.overlays.find((o) => o.type === 'marker');
  await page.locator(`[data-overlay-key="${m.key}"]`).click();
  await assert.doesNotReject(page.waitForSelector('.leaflet-popup-content', { timeout: 5000 }));
  assert.equal(await page.locator('.leaflet-popup-content strong').textContent(), m.name);
  // and a click event on each of them (some lie under others)
  const closePopup = async () => {
    await page.evaluate(() => window.publishViewer.map.closePopup());
    await page.waitForSelector('.leaflet-popup', { state: 'detached', timeout: 5000 });
  };
  for (const o of release.overlays) {
    await closePopup();
    await page.locator(`[data-overlay-key="${o.key}"]`).dispatchEvent('click');
    const name = await page.locator('.leaflet-popup-content strong').textContent({ timeout: 5000 });
    assert.equal(name, o.name, `popup of ${o.key}`);
  }
  await closePopup();
});

test('screenshot', async () => {
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  // back to the whole map (the popups panned it), its tiles loaded again
  await page.evaluate(() => new Promise((resolve) => {
    const v = window.publishViewer;
    v.tiles.once('load', () => resolve());
    v.home();
    if (!v.tiles.isLoading()) resolve();
  }));
  await page.mouse.move(0, 0);
  await page.screenshot({ path: SCREENSHOT });
  assert.ok(fs.statSync(SCREENSHOT).size > 10000, `screenshot ${SCREENSHOT}`);
});
