/* Phoenyra EMS – monitoring page: history charts and the Sankey of energy flows.
 * Data: GET /api/history/state?hours=&points=&channels= (bucket means on the plant's clock) and
 * GET /api/history/energy_flows?hours= (kWh per flow, totals, savings). Both end at the EMS's "now", so a
 * simulator running on its own clock shows its own day.
 * One range for both: the chart's and the Sankey's pickers are two views of it. It lives in the address
 * (#range=week, so back/forward and a shared link keep it) and in localStorage (the next visit keeps it).
 * The Sankey is plain SVG drawn here: sources (PV, battery, grid) on the left, sinks (house, battery, grid,
 * curtailed PV) on the right, each band as wide as its kWh.
 */
(function () {
  'use strict';

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, t = U.t, fmtNum = U.fmtNum;
  var DASH = '\u2014';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var STORE_KEY = 'ems.monitoring.range';
  var RANGES = { hour: 3600, day: 86400, week: 7 * 86400, month: 30 * 86400, year: 365 * 86400 };
  var ORDER = ['hour', 'day', 'week', 'month', 'year'];
  var DEFAULT_RANGE = 'day';
  var CHANNELS = ['soc_pct', 'pv_power_w', 'load_power_w', 'grid_power_w', 'bess_power_w'];

  var range = DEFAULT_RANGE;
  var loads = 0;  // a response for an older request (the range changed meanwhile) is dropped

  function cssVar(name, fallback) {
    var v = window.getComputedStyle(document.documentElement).getPropertyValue(name);
    return v && v.trim() ? v.trim() : fallback;
  }
  var COLOURS = {
    pv: cssVar('--c-pv', '#f59e0b'), load: cssVar('--c-load', '#3b82f6'), grid: cssVar('--c-grid', '#6b7280'),
    bess: cssVar('--c-bess', '#16a34a'), curtailed: '#d1d5db'
  };

  function kwh(v) { return isNum(v) ? fmtNum(v, Math.abs(v) < 10 ? 2 : 1) + ' kWh' : DASH; }
  function euro(v) { return isNum(v) ? fmtNum(Math.abs(v) < 0.005 ? 0 : v, 2) + ' \u20ac' : DASH; }

  // ---------------------------------------------------------------- the shared range

  function rangeFromHash() {
    var m = /(?:^#|&)range=([a-z]+)/.exec(window.location.hash || '');
    return m && RANGES[m[1]] ? m[1] : null;
  }

  function storedRange() {
    try {
      var v = window.localStorage.getItem(STORE_KEY);
      return v && RANGES[v] ? v : null;
    } catch (e) {
      return null;  // storage off (private mode, a policy): the address still carries the range
    }
  }

  function showRange() {
    var pickers = document.querySelectorAll('[data-range-picker]');
    for (var i = 0; i < pickers.length; i++) {
      var buttons = pickers[i].querySelectorAll('button[data-range]');
      for (var j = 0; j < buttons.length; j++) {
        var on = buttons[j].getAttribute('data-range') === range;
        buttons[j].setAttribute('aria-checked', on ? 'true' : 'false');
        buttons[j].tabIndex = on ? 0 : -1;  // one tab stop per group; arrows move inside it
      }
      pickers[i].setAttribute('data-selected', range);
    }
  }

  /** Make `key` the range of the page: both pickers, the address, storage, then the data. */
  function setRange(key) {
    if (!RANGES[key]) return;
    var changed = key !== range;
    range = key;
    showRange();
    if (rangeFromHash() !== key && window.history && window.history.replaceState) {
      window.history.replaceState(null, '', window.location.pathname + window.location.search + '#range=' + key);
    }
    try { window.localStorage.setItem(STORE_KEY, key); } catch (e) { /* see storedRange */ }
    if (changed) load();
  }

  function initPickers() {
    var pickers = document.querySelectorAll('[data-range-picker]');
    for (var i = 0; i < pickers.length; i++) {
      pickers[i].addEventListener('click', function (ev) {
        var btn = ev.target && ev.target.closest ? ev.target.closest('button[data-range]') : null;
        if (btn) setRange(btn.getAttribute('data-range'));
      });
      pickers[i].addEventListener('keydown', function (ev) {
        var step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[ev.key];
        if (!step) return;
        ev.preventDefault();
        var next = ORDER[(ORDER.indexOf(range) + step + ORDER.length) % ORDER.length];
        setRange(next);
        var btn = ev.currentTarget.querySelector('button[data-range="' + next + '"]');
        if (btn) btn.focus();
      });
    }
    window.addEventListener('hashchange', function () {
      var key = rangeFromHash();
      if (key && key !== range) setRange(key);
    });
  }

  function spanText(body) {
    if (!body || !isNum(body.from) || !isNum(body.to)) return '';
    var style = RANGES[range] <= 86400 ? 'datetime' : 'date';
    return t('{from} to {to}', { from: U.fmtTime(body.from, style), to: U.fmtTime(body.to, style) });
  }

  // ---------------------------------------------------------------- charts

  var charts = { soc: null, power: null };

  /** Bucket rows → {x, y} points; a missing stretch longer than 2.5 buckets becomes a gap, not a straight line. */
  function series(rows, key, scale, bucketS) {
    var out = [], last = null;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (!r || !isNum(r.ts)) continue;
      if (last !== null && isNum(bucketS) && r.ts - last > 2.5 * bucketS) out.push({ x: (last + r.ts) / 2, y: null });
      out.push({ x: r.ts, y: isNum(r[key]) ? r[key] * scale : null });
      last = r.ts;
    }
    return out;
  }

  function lineSet(label, colour, data) {
    return { label: label, data: data, borderColor: colour, backgroundColor: colour, borderWidth: 1.5,
      pointRadius: 0, pointHoverRadius: 3, tension: 0, spanGaps: false };
  }

  function chartOptions(from, to, unit, digits, yExtra) {
    var y = { type: 'linear', title: { display: true, text: unit },
      grid: { color: function (ctx) { return ctx.tick && ctx.tick.value === 0 ? 'rgba(0,0,0,0.35)' : 'rgba(0,0,0,0.07)'; } } };
    if (yExtra) for (var k in yExtra) if (Object.prototype.hasOwnProperty.call(yExtra, k)) y[k] = yExtra[k];
    return {
      animation: false, responsive: true, maintainAspectRatio: false, normalized: true, parsing: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      plugins: {
        legend: { display: unit !== '%', position: 'top', align: 'end', labels: { boxWidth: 12, boxHeight: 2 } },
        tooltip: { callbacks: {
          title: function (items) { return items.length ? U.fmtTime(items[0].parsed.x, 'datetime') : ''; },
          label: function (c) {
            var v = c.parsed ? c.parsed.y : null;
            return ' ' + c.dataset.label + ': ' + (isNum(v) ? fmtNum(v, digits) + ' ' + unit : DASH);
          } } }
      },
      scales: { x: U.timeScale(from, to), y: y }
    };
  }

  /** Draw or redraw one chart in place (Chart.js keeps its canvas; only data and the axis move). */
  function showChart(name, id, datasets, options) {
    var canvas = $(id);
    if (!canvas || !window.Chart) return;
    var c = charts[name];
    if (c) {
      c.data.datasets = datasets;
      c.options.scales.x.min = options.scales.x.min;
      c.options.scales.x.max = options.scales.x.max;
      c.update('none');
    } else {
      try {
        charts[name] = new window.Chart(canvas, { type: 'line', data: { datasets: datasets }, options: options });
      } catch (e) {
        if (window.console) console.warn('history chart unavailable:', e);
      }
    }
    canvas.setAttribute('data-range', range);
  }

  function renderCharts(body) {
    var rows = Array.isArray(body.rows) ? body.rows : [];
    var from = body.from, to = body.to, b = body.bucket_s;
    var soc = series(rows, 'soc_pct', 1, b);
    showChart('soc', 'hist-soc', [lineSet(t('State of charge'), COLOURS.bess, soc)],
      chartOptions(from, to, '%', 1, { min: 0, max: 100 }));
    showChart('power', 'hist-power', [
      lineSet(t('PV'), COLOURS.pv, series(rows, 'pv_power_w', 0.001, b)),
      lineSet(t('House'), COLOURS.load, series(rows, 'load_power_w', 0.001, b)),
      lineSet(t('Grid'), COLOURS.grid, series(rows, 'grid_power_w', 0.001, b)),
      lineSet(t('Battery'), COLOURS.bess, series(rows, 'bess_power_w', 0.001, b))
    ], chartOptions(from, to, 'kW', 2));
    var empty = !rows.length;
    var e1 = $('hist-soc-empty'), e2 = $('hist-power-empty');
    if (e1) e1.hidden = !empty;
    if (e2) e2.hidden = !empty;
    U.setTextById('hist-span', spanText(body));
    var panel = document.querySelector('[data-testid=history-panel]');
    if (panel) { panel.setAttribute('data-loaded', range); panel.setAttribute('data-rows', String(rows.length)); }
  }

  // ---------------------------------------------------------------- Sankey

  var SOURCES = [
    { id: 'pv', label: t('PV'), colour: 'pv' },
    { id: 'battery', label: t('Battery'), colour: 'bess' },
    { id: 'grid', label: t('Grid'), colour: 'grid' }
  ];
  var SINKS = [
    { id: 'load', label: t('House'), colour: 'load' },
    { id: 'battery', label: t('Battery'), colour: 'bess' },
    { id: 'grid', label: t('Grid'), colour: 'grid' },
    { id: 'curtailed', label: t('Curtailed'), colour: 'curtailed' }
  ];
  // flow key of /api/history/energy_flows → [source, sink]
  var FLOWS = {
    pv_to_load: ['pv', 'load'], pv_to_battery: ['pv', 'battery'], pv_to_grid: ['pv', 'grid'],
    pv_curtailed: ['pv', 'curtailed'], battery_to_load: ['battery', 'load'], battery_to_grid: ['battery', 'grid'],
    grid_to_load: ['grid', 'load'], grid_to_battery: ['grid', 'battery']
  };
  // Drawn at the box's own width (one unit one pixel), so labels keep their size on a phone.
  var W = 640, H = 300, NODE_W = 14, LEFT_X = 150, RIGHT_X = W - 150 - NODE_W, PAD = 8, GAP = 18;

  function layout(box) {
    W = Math.max(300, Math.round(box.clientWidth || 640));
    H = W < 480 ? 260 : 300;
    var margin = Math.min(150, Math.round(W * 0.27));
    LEFT_X = margin;
    RIGHT_X = W - margin - NODE_W;
    box.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** Nodes of one side with their kWh, in the side's order; nodes without energy are left out. */
  function column(nodes, links, end) {
    var out = [];
    nodes.forEach(function (n) {
      var sum = 0;
      links.forEach(function (l) { if (l[end] === n.id) sum += l.kwh; });
      if (sum > 0) out.push({ id: n.id, label: n.label, colour: COLOURS[n.colour], kwh: sum });
    });
    return out;
  }

  /** y and height of each node: heights ∝ kWh, gaps between them, the column centred. */
  function place(col, scale) {
    var used = 0;
    col.forEach(function (n) { n.h = Math.max(2, n.kwh * scale); used += n.h; });
    var y = PAD + (H - 2 * PAD - used - GAP * (col.length - 1)) / 2;
    col.forEach(function (n) { n.y = y; n.next = y; y += n.h + GAP; });
    var byId = {};
    col.forEach(function (n) { byId[n.id] = n; });
    return byId;
  }

  function drawSankey(flows) {
    var box = $('sankey');
    if (!box) return [];
    layout(box);
    while (box.firstChild) box.removeChild(box.firstChild);
    var links = [];
    Object.keys(FLOWS).forEach(function (key) {
      var v = flows ? flows[key] : null;
      if (isNum(v) && v > 0.0005) links.push({ key: key, source: FLOWS[key][0], sink: FLOWS[key][1], kwh: v });
    });
    var left = column(SOURCES, links, 'source'), right = column(SINKS, links, 'sink');
    var total = 0;
    links.forEach(function (l) { total += l.kwh; });
    if (!total) return links;
    var most = Math.max(left.length, right.length);
    var scale = (H - 2 * PAD - GAP * (most - 1)) / total;
    var L = place(left, scale), R = place(right, scale);
    // Bands leave a source in the sinks' order and enter a sink in the sources' order: no band crosses
    // another at its ends.
    var sinkOrder = SINKS.map(function (n) { return n.id; }), sourceOrder = SOURCES.map(function (n) { return n.id; });
    links.sort(function (a, b) { return sinkOrder.indexOf(a.sink) - sinkOrder.indexOf(b.sink); });
    links.forEach(function (l) { var s = L[l.source]; l.y0 = s.next + l.kwh * scale / 2; s.next += l.kwh * scale; });
    links.sort(function (a, b) { return sourceOrder.indexOf(a.source) - sourceOrder.indexOf(b.source); });
    links.forEach(function (l) { var k = R[l.sink]; l.y1 = k.next + l.kwh * scale / 2; k.next += l.kwh * scale; });

    var x0 = LEFT_X + NODE_W, x1 = RIGHT_X, mid = (x0 + x1) / 2;
    var g = svg('g', { 'class': 'sk-links' });
    links.forEach(function (l) {
      var path = svg('path', {
        'class': 'sk-link', d: 'M' + x0 + ',' + l.y0.toFixed(1) + ' C' + mid + ',' + l.y0.toFixed(1) + ' ' + mid + ',' +
          l.y1.toFixed(1) + ' ' + x1 + ',' + l.y1.toFixed(1),
        stroke: L[l.source].colour, 'stroke-width': Math.max(1, l.kwh * scale).toFixed(1),
        'data-flow': l.key, 'data-kwh': l.kwh, 'data-testid': 'sankey-link'
      });
      path.appendChild(svg('title', {}, L[l.source].label + ' \u2192 ' + R[l.sink].label + ': ' + kwh(l.kwh)));
      g.appendChild(path);
    });
    box.appendChild(g);
    function nodes(col, x, side) {
      col.forEach(function (n) {
        var node = svg('g', { 'data-node': side + ':' + n.id, 'data-testid': 'sankey-node' });
        node.appendChild(svg('rect', { 'class': 'sk-node', x: x, y: n.y.toFixed(1), width: NODE_W, height: n.h.toFixed(1),
          fill: n.colour, rx: 2 }));
        var tx = side === 'from' ? x - 8 : x + NODE_W + 8, anchor = side === 'from' ? 'end' : 'start';
        var cy = n.y + n.h / 2;
        node.appendChild(svg('text', { x: tx, y: (cy - 2).toFixed(1), 'text-anchor': anchor }, n.label));
        node.appendChild(svg('text', { 'class': 'sk-value', x: tx, y: (cy + 13).toFixed(1), 'text-anchor': anchor }, kwh(n.kwh)));
        box.appendChild(node);
      });
    }
    nodes(left, LEFT_X, 'from');
    nodes(right, RIGHT_X, 'to');
    return links;
  }

  var lastFlows = null;

  function renderFlows(body) {
    lastFlows = body.flows_kwh || {};
    var links = drawSankey(lastFlows);
    var tot = body.totals_kwh || {};
    U.setTextById('flow-pv', kwh(tot.pv));
    U.setTextById('flow-load', kwh(tot.load));
    U.setTextById('flow-import', kwh(tot['import']));
    U.setTextById('flow-export', kwh(tot['export']));
    U.setTextById('flow-charge', kwh(tot.charge));
    U.setTextById('flow-discharge', kwh(tot.discharge));
    U.setTextById('flow-savings', euro(body.savings_eur));
    var empty = $('sankey-empty');
    if (empty) empty.hidden = links.length > 0;
    // The same picture in words, for a screen reader.
    U.setTextById('sankey-desc', links.map(function (l) {
      return t('{from} to {to}: {kwh}', { from: label(SOURCES, l.source), to: label(SINKS, l.sink), kwh: kwh(l.kwh) });
    }).join('; '));
    var span = spanText(body);
    var h = body.covered_h;
    if (isNum(h) && isNum(body.from) && isNum(body.to) && h * 3600 < 0.95 * (body.to - body.from)) {
      span += ' \u00b7 ' + (h < 1 ? t('data for {n} min of it', { n: fmtNum(h * 60, 0) })
        : t('data for {h} h of it', { h: fmtNum(h, h < 10 ? 1 : 0) }));
    }
    U.setTextById('sankey-span', span);
    var box = $('sankey');
    if (box) box.setAttribute('data-range', range);
  }

  function label(list, id) {
    for (var i = 0; i < list.length; i++) if (list[i].id === id) return list[i].label;
    return id;
  }

  // ---------------------------------------------------------------- loading

  function pointsFor(id) {
    var c = $(id);
    var width = c && c.clientWidth ? c.clientWidth : 600;
    return Math.max(60, Math.min(800, Math.round(width)));
  }

  function load() {
    var mine = ++loads, key = range, hours = RANGES[key] / 3600;
    window.EMS.getJson('/api/history/state?hours=' + hours + '&points=' + pointsFor('hist-power') +
        '&channels=' + CHANNELS.join(','))
      .then(function (body) { if (mine === loads && body) renderCharts(body); })
      .catch(function (e) { if (window.console) console.warn('history unavailable:', e && e.message); });
    window.EMS.getJson('/api/history/energy_flows?hours=' + hours)
      .then(function (body) { if (mine === loads && body) renderFlows(body); })
      .catch(function (e) { if (window.console) console.warn('energy flows unavailable:', e && e.message); });
  }

  function start() {
    if (!$('hist-power') && !$('sankey')) return;
    range = rangeFromHash() || storedRange() || DEFAULT_RANGE;
    initPickers();
    showRange();
    setRange(range);  // writes the address and storage once
    load();
    // Fresh data while the page is open: the hour every 30 s, longer ranges every 5 min.
    var due = 0;
    var resizeTimer = null, drawnWidth = 0;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        var box = $('sankey');
        if (!box || !lastFlows || Math.abs((box.clientWidth || 0) - drawnWidth) < 8) return;
        drawnWidth = box.clientWidth;
        drawSankey(lastFlows);
      }, 150);
    });
    setInterval(function () {
      if (document.hidden) return;
      due += 30;
      if (RANGES[range] <= 3600 || due >= 300) { due = 0; load(); }
    }, 30000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
