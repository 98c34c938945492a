/* Phoenyra EMS – small helpers every page script uses (loaded first by base.tpl). */
(function () {
  'use strict';

  function byId(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------- translations (ems/i18n.py)
  // window.EMS_I18N comes from /i18n/<lang>.js, loaded before this file. gettext's convention: the English
  // text is the msgid, so a page is English without a catalog and German with one.
  var I18N = window.EMS_I18N || { lang: 'en', locale: 'en-GB', messages: {} };
  var MESSAGES = I18N.messages || {};
  var LOCALE = I18N.locale || 'en-GB';

  /** Translate a msgid and fill its {name} placeholders from params ({n: 3} fills "{n}"). */
  function t(msgid, params) {
    var text = Object.prototype.hasOwnProperty.call(MESSAGES, msgid) ? MESSAGES[msgid] : msgid;
    if (!params) return text;
    return text.replace(/\{([a-z_][a-z0-9_]*)\}/g, function (m, name) {
      return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m;
    });
  }

  var numberFormats = {};
  /** A number in the page's locale with exactly `digits` decimals ("1,25" in German); '' for a non-number. */
  function fmtNum(v, digits) {
    if (typeof v !== 'number' || !isFinite(v)) return '';
    var d = digits === undefined ? 0 : digits;
    var f = numberFormats[d] || (numberFormats[d] = new Intl.NumberFormat(LOCALE, {
      minimumFractionDigits: d, maximumFractionDigits: d, useGrouping: 'min2'  // 12,345 but 1234
    }));
    return f.format(v);
  }

  // Times are the plant's: its site.timezone (a meta tag of every page), wherever the browser is.
  var zoneMeta = document.querySelector('meta[name="site-timezone"]');
  var TIME_ZONE = (zoneMeta && zoneMeta.getAttribute('content')) || undefined;
  try { new Intl.DateTimeFormat('en', { timeZone: TIME_ZONE }); } catch (e) { TIME_ZONE = undefined; }

  /** Whether two epoch-second instants fall on the same day of the site. */
  function sameDay(a, b) { return fmtTime(a, 'date') === fmtTime(b, 'date'); }

  var timeFormats = {};
  /** Epoch seconds as the site's wall time in the page's locale; style 'time' (HH:MM:SS), 'hm', 'date', 'datetime',
   *  'wdhm' (weekday and HH:MM), 'dm' (day and month), 'my' (month and year). */
  function fmtTime(ts, style) {
    if (typeof ts !== 'number' || !isFinite(ts)) return '';
    var s = style || 'time';
    var opts = {
      time: { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false },
      hm: { hour: '2-digit', minute: '2-digit', hour12: false },
      date: { year: 'numeric', month: '2-digit', day: '2-digit' },
      datetime: { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false },
      wdhm: { weekday: 'short', hour: '2-digit', minute: '2-digit', hour12: false },
      dm: { day: '2-digit', month: 'short' },
      my: { month: 'short', year: 'numeric' }
    }[s] || {};
    if (TIME_ZONE) opts.timeZone = TIME_ZONE;
    var f = timeFormats[s] || (timeFormats[s] = new Intl.DateTimeFormat(LOCALE, opts));
    return f.format(new Date(ts * 1000));
  }

  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  var offsetFormat = null;
  /** The site's UTC offset in seconds at the instant `ts` (summer time included). */
  function zoneOffsetS(ts) {
    if (!offsetFormat) {
      var o = { year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric',
        second: 'numeric', hourCycle: 'h23' };
      if (TIME_ZONE) o.timeZone = TIME_ZONE;
      offsetFormat = new Intl.DateTimeFormat('en-US', o);
    }
    var p = {};
    offsetFormat.formatToParts(new Date(ts * 1000)).forEach(function (part) { p[part.type] = Number(part.value); });
    var wall = Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second) / 1000;
    return Math.round((wall - Math.floor(ts)) / 60) * 60;
  }

  var TICK_STEPS_S = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600];

  /** Tick instants between min and max (epoch s) on the site's clock: whole minutes, hours, days or months,
   *  at most `most` of them; and the fmtTime style their labels take. */
  function timeTicks(min, max, most) {
    var span = max - min, ticks = [], style, i;
    if (!(span > 0)) return { ticks: [], style: 'hm' };
    most = Math.max(2, most || 6);
    var step = 0;
    for (i = 0; i < TICK_STEPS_S.length; i++) if (span / TICK_STEPS_S[i] <= most) { step = TICK_STEPS_S[i]; break; }
    if (step) {
      var off = zoneOffsetS(min);
      for (var x = Math.ceil((min + off) / step) * step - off; x <= max && ticks.length < 400; x += step) {
        var fix = zoneOffsetS(x) - off;  // a summer-time change inside the range keeps ticks on the hour
        ticks.push(x - fix);
      }
      style = step >= 86400 ? 'dm' : (span > 86400 ? 'wdhm' : 'hm');
    } else {
      var months = 1;
      while (span / (months * 30.44 * 86400) > most) months = months < 3 ? months + 1 : months * 2;
      var local = new Date((min + zoneOffsetS(min)) * 1000);
      var y = local.getUTCFullYear(), m = local.getUTCMonth() + 1;
      for (var n = 0; n < 400; n++, m += months) {
        var guess = Date.UTC(y, m - 1, 1) / 1000;
        var at = guess - zoneOffsetS(guess);
        if (at > max) break;
        if (at >= min) ticks.push(at);
      }
      style = 'my';
    }
    return { ticks: ticks, style: style };
  }

  /** Chart.js options for an x axis of epoch seconds from `min` to `max` that is a time axis: ticks on whole
   *  minutes, hours, days or months of the site's clock, labelled as such (no date adapter needed). */
  function timeScale(min, max) {
    var style = 'hm';
    return {
      type: 'linear', min: min, max: max, bounds: 'data', offset: false,
      afterBuildTicks: function (axis) {
        var most = Math.max(2, Math.floor((axis.width || 600) / 90));
        var made = timeTicks(axis.min, axis.max, most);
        style = made.style;
        axis.ticks = made.ticks.map(function (v) { return { value: v }; });
      },
      ticks: { autoSkip: false, maxRotation: 0, callback: function (v) { return fmtTime(v, style); } },
      grid: { color: 'rgba(0,0,0,0.06)' }
    };
  }

  /** Safe nested property access: get(obj, 'a', 'b', 'c'); undefined on any missing level. */
  function get(obj) {
    var cur = obj;
    for (var i = 1; i < arguments.length; i++) {
      if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
      cur = cur[arguments[i]];
    }
    return cur;
  }

  /** `base` with a live-stream delta merged in (ems/api/deltas.py): changed branches are new objects, the rest
   *  is shared, so a page may compare parts of two states by identity. */
  function applyDelta(base, patch) {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch) ||
        base === null || typeof base !== 'object' || Array.isArray(base)) return patch;
    var out = {};
    Object.keys(base).forEach(function (k) { out[k] = base[k]; });
    Object.keys(patch).forEach(function (k) { out[k] = applyDelta(base[k], patch[k]); });
    return out;
  }

  var charts = {};
  /** Draw a Chart.js chart on the canvas `id`, replacing the one drawn there before; null without Chart.js. */
  function drawChart(id, config) {
    if (charts[id]) charts[id].destroy();
    var canvas = byId(id);
    if (!canvas || !window.Chart) return null;
    charts[id] = new window.Chart(canvas, config);
    return charts[id];
  }

  /** Set an element's text by id, touching the DOM only when it changes. */
  function setTextById(id, text) { var e = byId(id); if (e && e.textContent !== text) e.textContent = text; }

  /** Replace a table body's rows: one row of `cells(item)` (texts) per item, or one muted row saying `empty`.
   *  opts.testid names each row; opts.data lists the columns holding data in no language (translate="no"). */
  function fillRows(tbody, items, columns, empty, cells, opts) {
    var o = opts || {};
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (!items.length) {
      var tr0 = document.createElement('tr');
      var td0 = document.createElement('td');
      td0.colSpan = columns;
      td0.className = 'muted';
      td0.textContent = empty;
      tr0.appendChild(td0);
      tbody.appendChild(tr0);
    }
    items.forEach(function (item) {
      var tr = document.createElement('tr');
      if (o.testid) tr.setAttribute('data-testid', o.testid);
      cells(item).forEach(function (text, i) {
        var td = document.createElement('td');
        td.textContent = text;
        if (o.data && o.data.indexOf(i) >= 0) td.setAttribute('translate', 'no');
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  var WATCHDOG_MS = 10000;  // no event for this long: the connection counts as down
  var RETRY_MS = 5000;
  var INITIAL_WAIT_MS = 1500;  // a page waits this long for the stream's first state before it asks itself

  /**
   * Live plant state for a page: follows the SSE stream (event "state", then "delta"s), reconnecting when the
   * browser gives up, and keeps #conn-status ("live" / "reconnecting…") honest; /api/state only as a fallback.
   * onState(state, fromEvent) is called for every state; the fallback's only if no event came first.
   */
  function liveState(onState) {
    var connEl = byId('conn-status');
    var lastEventAt = 0;
    var es = null;
    var retryTimer = null;

    function setConn(state) {
      if (!connEl) return;
      var text = state === 'live' ? t('live') : t('reconnecting…');
      if (connEl.textContent !== text) connEl.textContent = text;
      connEl.setAttribute('data-state', state);
      if (document.body) document.body.setAttribute('data-conn', state === 'live' ? 'up' : 'down');
    }

    var current = null;  // the state the deltas apply to

    function onEvent(ev) {
      var st;
      try { st = JSON.parse(ev.data); } catch (e) { return; }  // ignore malformed frames
      if (ev.type === 'delta') {
        if (current === null) return;  // a delta before any whole state: wait for the next one
        st = applyDelta(current, st);
      }
      current = st;
      lastEventAt = Date.now();
      setConn('live');
      onState(st, true);
      document.dispatchEvent(new CustomEvent('ems:live', { detail: st }));  // e.g. for the user menu
    }

    function connect() {
      if (typeof window.EventSource !== 'function') return;
      retryTimer = null;
      try {
        es = new EventSource('/api/events?deltas=1');
      } catch (e) {
        setConn('reconnecting');
        retryTimer = setTimeout(connect, RETRY_MS);
        return;
      }
      es.addEventListener('state', onEvent);
      es.addEventListener('delta', onEvent);
      es.onmessage = onEvent;  // tolerate un-named events carrying the same payload
      es.onerror = function () {
        setConn('reconnecting');
        // The browser retries by itself unless the stream was closed for good (e.g. an HTTP error).
        if (es && es.readyState === 2 /* CLOSED */ && !retryTimer) {
          es.close();
          retryTimer = setTimeout(connect, RETRY_MS);
        }
      };
    }

    // The stream's first event is the whole state, so /api/state is asked only when the stream cannot start
    // or has said nothing after INITIAL_WAIT_MS (a proxy that buffers it): one request less per page load.
    function fetchInitial() {
      if (lastEventAt) return;
      fetch('/api/state', { cache: 'no-cache', headers: { 'Accept': 'application/json' } })
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
        .then(function (st) { if (!lastEventAt) onState(st, false); })
        .catch(function (e) { if (window.console) console.warn('initial state unavailable:', e && e.message); });
    }
    connect();
    if (es) setTimeout(fetchInitial, INITIAL_WAIT_MS); else fetchInitial();
    setInterval(function () {
      if (lastEventAt && Date.now() - lastEventAt > WATCHDOG_MS) setConn('reconnecting');
    }, 2000);
  }

  window.EMSUtil = Object.freeze({
    $: byId, isNum: isNum, get: get, liveState: liveState, applyDelta: applyDelta, INITIAL_WAIT_MS: INITIAL_WAIT_MS,
    drawChart: drawChart, setTextById: setTextById, fillRows: fillRows,
    t: t, fmtNum: fmtNum, fmtTime: fmtTime, sameDay: sameDay, zoneOffsetS: zoneOffsetS, timeTicks: timeTicks,
    timeScale: timeScale, lang: I18N.lang || 'en', locale: LOCALE,
    timeZone: TIME_ZONE
  });
})();
