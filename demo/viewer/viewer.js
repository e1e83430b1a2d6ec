// viewer.js: shows a published release.json with Leaflet: the tileset's
// tiles and every overlay, each with its name in a popup on click.
//
//   index.html?release=URL     URL of a release.json, absolute or relative to
//                              this page; read with fetch, so a server on
//                              another origin must allow it (CORS)
//
// The tiles are an image pyramid (docs/tiles.md, "Which tiles exist"): zoom z is
// 2^z x 2^z tiles of tile_size pixels, x to the right and y downwards from the
// top-left corner, not Web Mercator.  The tileset's bounds [west, south,
// east, north] span the whole pyramid, so the map uses a flat CRS that puts
// the bounds' north-west corner at pixel (0, 0) and the south-east corner at
// (tile_size * 2^z) at zoom z; overlays (GeoJSON lon/lat) are placed on it
// linearly.  Without a tileset or bounds the overlays' extent is used.
//
// URLs in release.json that a browser cannot fetch (file://, s3://) are
// replaced by the same layout relative to the release.json that was read:
// tiles at {release dir}/tiles/v{N}/..., assets at {root}/{asset path}.
//
// For tests and the curious, window.publishViewer holds the map, the
// document and one Leaflet layer per overlay key; each drawn overlay's
// element carries data-overlay-key and data-overlay-type; <body> gets
// data-state ("ready", "error", "no-release") and data-tiles ("loaded",
// "none") when there is something to wait for.
'use strict';

(function () {
	const TYPES = ['marker', 'label', 'polyline', 'polygon', 'image'];
	const TYPE_COLOURS = {
		marker: '#2a81cb', label: '#333333', polyline: '#2ca02c',
		polygon: '#1f77b4', image: '#8899aa',
	};
	// drawn when an image overlay's file cannot be loaded: its footprint
	const MISSING_IMAGE = 'data:image/svg+xml,' + encodeURIComponent(
		"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 100 100' preserveAspectRatio='none'>" +
		"<rect width='100' height='100' fill='#8899aa' fill-opacity='0.12' stroke='#556677'" +
		" stroke-width='1.5' stroke-dasharray='6 4' vector-effect='non-scaling-stroke'/></svg>");

	const viewer = { map: null, release: null, layers: {}, tileErrors: 0, problems: [] };
	window.publishViewer = viewer;
	const body = document.body;

	function el(tag, text, className) {
		const e = document.createElement(tag);
		if (text !== undefined) e.textContent = text;
		if (className) e.className = className;
		return e;
	}

	// the panel in the top-right corner: what is shown, or what went wrong
	const panel = el('div', undefined, 'publish-panel');
	function say(title, ...lines) {
		panel.replaceChildren(el('h1', title), ...lines);
	}
	function fail(message) {
		say('publish viewer', el('p', message, 'publish-error'));
		body.dataset.state = 'error';
	}

	const params = new URLSearchParams(window.location.search);
	const release = params.get('release');
	const mapDiv = document.getElementById('map');
	if (!release) {
		mapDiv.appendChild(panel);
		panel.style.cssText = 'position:absolute;top:10px;right:10px;z-index:1000';
		say('publish viewer',
			el('p', 'Add ?release=URL to this page\u2019s address: the URL of a published release.json, ' +
			   'such as ?release=/maps/production/campus/release.json.'));
		body.dataset.state = 'no-release';
		return;
	}

	let releaseUrl;
	try {
		releaseUrl = new URL(release, window.location.href);
	} catch (e) {
		mapDiv.appendChild(panel);
		fail(`"${release}" is not a URL.`);
		return;
	}

	fetch(releaseUrl, { cache: 'no-cache' })
		.then((r) => {
			if (!r.ok) throw new Error(`${r.status} ${r.statusText}`.trim());
			return r.json();
		})
		.then((doc) => show(doc, releaseUrl))
		.catch((err) => {
			mapDiv.appendChild(panel);
			panel.style.cssText = 'position:absolute;top:10px;right:10px;z-index:1000';
			fail(`Could not show ${releaseUrl.href}: ${err.message}. ` +
			     'Is the URL right, and does its server allow this page to read it (CORS)?');
		});

	const browserReadable = (url) => typeof url === 'string' && /^https?:\/\//i.test(url);

	// [lon, lat] -> Leaflet's [lat, lon]; lists of them, at any depth
	function toLatLngs(coords) {
		if (typeof coords[0] === 'number') return L.latLng(coords[1], coords[0]);
		return coords.map(toLatLngs);
	}

	// every [lon, lat] position in a GeoJSON geometry
	function positions(geometry) {
		const out = [];
		(function walk(c) {
			if (!Array.isArray(c)) return;
			if (typeof c[0] === 'number') out.push(c);
			else c.forEach(walk);
		})(geometry && geometry.coordinates);
		return out;
	}

	// [west, south, east, north] of the tileset, else of the overlays
	function extentOf(doc) {
		const b = doc.tileset && doc.tileset.bounds;
		if (Array.isArray(b) && b.length === 4 && b[2] > b[0] && b[3] > b[1]) return b;
		let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
		for (const o of doc.overlays || []) {
			for (const [x, y] of positions(o.geometry)) {
				w = Math.min(w, x); e = Math.max(e, x); s = Math.min(s, y); n = Math.max(n, y);
			}
		}
		if (!(e >= w && n >= s)) return [-1, -1, 1, 1];
		const pad = Math.max(e - w, n - s, 1e-6) * 0.05;
		return [w - pad, s - pad, e + pad, n + pad];
	}

	// The flat CRS described at the top: bounds -> [0, 1] x [0, 1] (y down),
	// then tile_size * 2^zoom pixels.  Dividing by the span keeps the corners
	// exact, so the tile range of each zoom is exactly 0 .. 2^z - 1.
	function pyramidCrs([w, s, e, n], tileSize) {
		const dx = e - w, dy = n - s;
		const projection = {
			bounds: L.bounds([0, 0], [1, 1]),
			project: (ll) => L.point((ll.lng - w) / dx, (n - ll.lat) / dy),
			unproject: (p) => L.latLng(n - p.y * dy, w + p.x * dx),
		};
		return L.extend({}, L.CRS.Simple, {
			projection,
			transformation: new L.Transformation(tileSize, 0, tileSize, 0),
			infinite: false,
		});
	}

	function tileTemplate(doc, ts) {
		if (browserReadable(ts.url_template)) return ts.url_template;
		const dir = new URL('.', releaseUrl).href;
		const anchor = `/${doc.environment}/${doc.project.slug}/`;
		const t = String(ts.url_template || '');
		const at = t.lastIndexOf(anchor);
		return dir + (at >= 0 ? t.slice(at + anchor.length) : `tiles/v${doc.version}/{z}/{x}/{y}.${ts.format}`);
	}

	function assetUrl(doc, key) {
		const a = (doc.assets || []).find((x) => x.key === key);
		if (!a) return null;
		if (browserReadable(a.url)) return a.url;
		// release.json is {root}/{env}/{slug}/release.json
		return a.path ? new URL(a.path, new URL('../../', releaseUrl)).href : null;
	}

	function popup(o) {
		const div = el('div', undefined, 'publish-popup');
		div.append(el('strong', o.name), el('div', `${o.type} \u00b7 ${o.key}`, 'publish-popup-type'));
		return div;
	}

	function overlayLayer(o, doc) {
		const p = o.properties || {};
		const g = o.geometry || {};
		const colour = typeof p.color === 'string' ? p.color : TYPE_COLOURS[o.type];
		switch (o.type) {
			case 'marker':
				return L.marker(toLatLngs(g.coordinates), { title: o.name, alt: o.name });
			case 'label': {
				const span = el('span', o.name);
				span.style.color = colour;
				if (typeof p.font_size === 'number') span.style.fontSize = `${p.font_size}px`;
				if (p.italic === true) span.style.fontStyle = 'italic';
				return L.marker(toLatLngs(g.coordinates), {
					icon: L.divIcon({ className: 'publish-label', html: span, iconSize: [0, 0] }),
				});
			}
			case 'polyline':
				return L.polyline(toLatLngs(g.coordinates), {
					color: colour,
					weight: typeof p.width === 'number' ? p.width : 3,
					dashArray: p.dashed === true ? '8 6' : null,
				});
			case 'polygon':
				return L.polygon(toLatLngs(g.coordinates), {
					color: colour, weight: 2,
					fillOpacity: typeof p.opacity === 'number' ? p.opacity : 0.35,
				});
			case 'image': {
				const ring = positions({ coordinates: g.coordinates && g.coordinates[0] });
				const lons = ring.map((c) => c[0]), lats = ring.map((c) => c[1]);
				const bounds = L.latLngBounds([Math.min(...lats), Math.min(...lons)],
				                              [Math.max(...lats), Math.max(...lons)]);
				return L.imageOverlay(assetUrl(doc, o.asset) || MISSING_IMAGE, bounds, {
					opacity: typeof p.opacity === 'number' ? p.opacity : 1,
					interactive: true, alt: o.name, pane: 'publish-images',
					errorOverlayUrl: MISSING_IMAGE,
				});
			}
			default:
				throw new Error(`unknown overlay type "${o.type}"`);
		}
	}

	function show(doc, url) {
		viewer.release = doc;
		const ts = doc.tileset || null;
		const tileSize = ts && ts.tile_size ? ts.tile_size : 256;
		const extent = extentOf(doc);
		const minZoom = ts ? ts.min_zoom : 0;
		const map = L.map(mapDiv, {
			crs: pyramidCrs(extent, tileSize),
			minZoom, maxZoom: (ts ? ts.max_zoom : 2) + 4, zoomSnap: 0.25,
		});
		viewer.map = map;

		// the panel first: the first view leaves room for it
		const info = L.control({ position: 'topright' });
		info.onAdd = () => panel;
		info.addTo(map);
		L.DomEvent.disableClickPropagation(panel);
		const counts = {};
		for (const o of doc.overlays || []) counts[o.type] = (counts[o.type] || 0) + 1;
		const list = el('ul');
		for (const type of Object.keys(counts).sort((a, b) => TYPES.indexOf(a) - TYPES.indexOf(b))) {
			const li = el('li');
			const sw = el('span', undefined, 'publish-swatch');
			sw.style.background = TYPE_COLOURS[type] || '#999';
			li.append(sw, el('span', `${counts[type]} ${type}${counts[type] === 1 ? '' : 's'}`));
			list.append(li);
		}
		say((doc.project && doc.project.name) || url.href,
			el('p', `version ${doc.version} \u00b7 ${doc.environment}`, 'publish-meta'),
			el('p', ts ? `${ts.tile_count} tiles, zoom ${ts.min_zoom}\u2013${ts.max_zoom}` : 'no tileset',
			   'publish-meta'),
			list);

		const [w, s, e, n] = extent;
		const bounds = L.latLngBounds([s, w], [n, e]);
		// the whole map, beside the panel when there is room for both
		viewer.home = () => {
			const room = mapDiv.clientWidth - panel.offsetWidth - 24 >= mapDiv.clientHeight / 2;
			map.fitBounds(bounds, {
				paddingTopLeft: [room ? 56 : 8, 8],		// the zoom buttons
				paddingBottomRight: [room ? panel.offsetWidth + 16 : 8, 8],
				animate: false,
			});
		};
		viewer.home();
		// images under lines and polygons, which are under markers and labels
		map.createPane('publish-images').style.zIndex = 350;

		if (ts) {
			const tiles = L.tileLayer(tileTemplate(doc, ts), {
				tileSize, minNativeZoom: ts.min_zoom, maxNativeZoom: ts.max_zoom,
				minZoom, maxZoom: map.getMaxZoom(), noWrap: true,
				attribution: `${doc.project.slug} v${doc.version} (${doc.environment})`,
			});
			tiles.on('tileerror', () => {
				viewer.tileErrors += 1;
				body.dataset.tileErrors = String(viewer.tileErrors);
			});
			tiles.on('load', () => { body.dataset.tiles = 'loaded'; });
			tiles.addTo(map);
			viewer.tiles = tiles;
		} else {
			body.dataset.tiles = 'none';
		}

		for (const o of doc.overlays || []) {
			let layer;
			try {
				layer = overlayLayer(o, doc);
			} catch (err) {
				viewer.problems.push(`not drawn: ${o.key}: ${err.message}`);
				continue;
			}
			layer.bindPopup(popup(o)).addTo(map);
			const elem = layer.getElement();
			if (elem) {
				elem.dataset.overlayKey = o.key;
				elem.dataset.overlayType = o.type;
			}
			viewer.layers[o.key] = layer;
		}
		if (viewer.problems.length) panel.append(el('p', viewer.problems.join('\n'), 'publish-error'));
		body.dataset.state = 'ready';
	}
})();
