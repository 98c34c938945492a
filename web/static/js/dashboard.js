/* Phoenyra EMS – dashboard page.
 * Plain JS, no build step. Data: GET /api/state, SSE /api/events (event "state"),
 * GET /api/monitoring/telemetry (chart seed). Must never throw on missing fields.
 * Every state it shows is re-sent as the DOM event "ems:state" (detail = the state) for plan.js.
 */
(function () {
  'use strict';

  var WINDOW_S = 15 * 60;          // rolling chart window
  var MAX_POINTS = 1200;           // hard cap, independent of timestamps
  var IDLE_W = 10;                 // |P| below this is "idle"
  var DASH = '\u2014';             // "—"

  // Strategy titles by name, from the registry (GET /api/strategies); until they arrive a name is shown
  // prettified ("peak_shaving" -> "Peak shaving").
  var strategyTitles = {};
  var shownStrategy = null;       // the name the strategy card shows, to re-title it when titles arrive

  // ---------------------------------------------------------------- helpers

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, get = U.get, t = U.t, fmtNum = U.fmtNum;

  // Labels for the codes the state carries (the codes stay in data-* attributes; only the label is translated).
  var STRATEGY_LABELS = {
    arbitrage: t('Arbitrage'),
    peak_shaving: t('Peak shaving'),
    self_consumption: t('Self-consumption'),
    load_balancing: t('Load balancing')
  };
  var MODE_LABELS = { auto: t('auto'), manual: t('manual') };
  var DIR_LABELS = { idle: t('idle'), discharging: t('discharging'), charging: t('charging') };

  function label(table, code) {
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }

  /** Normalise a measurement ({value, stale, age_s, ...}, bare value or null). */
  function meas(m) {
    if (m === null || m === undefined) return { value: null, stale: false, age: null };
    if (typeof m !== 'object' || Array.isArray(m)) return { value: m, stale: false, age: null };
    return {
      value: m.value === undefined ? null : m.value,
      stale: m.stale === true,
      age: isNum(m.age_s) ? m.age_s : null
    };
  }

  function fmtAge(s) {
    if (!isNum(s)) return t('unknown age');
    if (s < 120) return fmtNum(s, 1) + ' s';
    if (s < 7200) return t('{n} min', { n: fmtNum(Math.round(s / 60), 0) });
    return t('{n} h', { n: fmtNum(s / 3600, 1) });
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  /** Show/hide the stale styling on a value element (+ optional badge). */
  function markStale(el, m, badge) {
    if (!el) return;
    var stale = !!(m && m.stale && m.value !== null);
    el.classList.toggle('is-stale', stale);
    var title = stale ? t('stale – last value is {age} old', { age: fmtAge(m.age) }) : '';
    if (title) el.setAttribute('title', title); else el.removeAttribute('title');
    if (badge) {
      badge.hidden = !stale;
      if (title) badge.setAttribute('title', title); else badge.removeAttribute('title');
    }
  }

  function badgeOf(cardId) {
    var card = $(cardId);
    return card ? card.querySelector('.stale-badge') : null;
  }

  function humanStrategy(name) {
    if (typeof name !== 'string' || !name) return DASH;
    if (Object.prototype.hasOwnProperty.call(STRATEGY_LABELS, name)) return STRATEGY_LABELS[name];
    if (Object.prototype.hasOwnProperty.call(strategyTitles, name)) return strategyTitles[name];
    var s = name.replace(/[_-]+/g, ' ').trim();
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : DASH;
  }

  function hms(ts) { return U.fmtTime(ts, 'time'); }

  function toKw(w) { return isNum(w) ? Math.round(w) / 1000 : null; }

  // ---------------------------------------------------------------- KPIs

  function renderState(st) {
    if (!st || typeof st !== 'object') return;
    var plant = get(st, 'plant') || {};

    // SoC
    var soc = meas(get(plant, 'battery', 'soc_pct'));
    var socEl = $('kpi-soc-value');
    setText(socEl, isNum(soc.value) ? fmtNum(soc.value, 1) + ' %' : DASH);
    markStale(socEl, soc, badgeOf('kpi-soc'));
    var stText = meas(get(plant, 'battery', 'status_text'));
    var alarms = meas(get(plant, 'battery', 'alarms'));
    var nAlarms = Array.isArray(alarms.value) ? alarms.value.length : 0;
    // The BMS's own status text is the device's (its profile's words, translate="no"); the count is ours.
    var hasStatus = typeof stText.value === 'string' && stText.value;
    setText($('kpi-soc-status'), hasStatus ? stText.value : (nAlarms > 0 ? '' : '\u00a0'));
    setText($('kpi-soc-alarms'), nAlarms > 0 ? (hasStatus ? ' \u00b7 ' : '') +
      (nAlarms === 1 ? t('1 alarm') : t('{n} alarms', { n: fmtNum(nAlarms, 0) })) : '');

    // BESS power (> 0 discharging, < 0 charging)
    var p = meas(get(plant, 'bess', 'power_w'));
    var pEl = $('kpi-bess-power-value');
    var pSub = $('kpi-bess-power-sub');
    if (isNum(p.value)) {
      setText(pEl, fmtNum(p.value / 1000, 2) + ' kW');
      var dir = Math.abs(p.value) < IDLE_W ? 'idle' : (p.value > 0 ? 'discharging' : 'charging');
      setText(pSub, DIR_LABELS[dir]);
      if (pSub) pSub.setAttribute('data-dir', dir);
    } else {
      setText(pEl, DASH);
      setText(pSub, '\u00a0');
      if (pSub) pSub.removeAttribute('data-dir');
    }
    markStale(pEl, p, badgeOf('kpi-bess-power'));
    markStale(pSub, p, null);

    // Strategy
    var active = get(st, 'strategy', 'active');
    var mode = get(st, 'strategy', 'mode');
    shownStrategy = active;
    setText($('kpi-strategy-value'), humanStrategy(active));
    setText($('kpi-strategy-sub'), (typeof mode === 'string' && mode) ? t('mode: {mode}', { mode: label(MODE_LABELS, mode) }) : '\u00a0');

    // Expected profit
    var profit = get(st, 'expected_profit_24h_eur');
    setText($('kpi-profit-value'), isNum(profit) ? fmtNum(profit, 2) + ' \u20ac' : DASH);
    // A plan that loses money against no battery says so (a manual strategy can; auto never picks one that
    // loses more than the others).
    var loss = $('strategy-loss');
    if (loss) {
      var losing = isNum(profit) && profit < -0.005;
      loss.hidden = !losing;
      setText(loss, losing ? (mode === 'manual'
        ? t('This strategy’s plan costs {eur} € more than running without the battery; Auto would choose the best.', { eur: fmtNum(-profit, 2) })
        : t('The plan costs {eur} € more than running without the battery.', { eur: fmtNum(-profit, 2) })) : '');
    }
    strategyControl.update(st);
    renderOverride(st);
    renderFlow(plant);

    // DSO
    var dsoMode = meas(get(plant, 'dso', 'mode'));
    var dsoLim = meas(get(plant, 'dso', 'limit_pct'));
    var dsoEl = $('dso-state');
    var dsoText = DASH;
    var m = typeof dsoMode.value === 'string' ? dsoMode.value.toLowerCase() : '';
    if (m === 'normal') dsoText = t('Normal');
    else if (m === 'limit') dsoText = isNum(dsoLim.value) ? t('Limit {pct} %', { pct: fmtNum(Math.round(dsoLim.value), 0) }) : t('Limit');
    else if (m === 'trip') dsoText = t('Trip');
    else if (m) dsoText = humanStrategy(m);
    setText(dsoEl, dsoText);
    if (dsoEl) {
      if (m) dsoEl.setAttribute('data-mode', m); else dsoEl.removeAttribute('data-mode');
    }
    markStale(dsoEl, dsoMode, null);

    // event-loop lag
    var p99 = get(st, 'runtime', 'loop_lag_ms', 'p99');
    setText($('loop-lag'), isNum(p99) ? fmtNum(p99, 1) + ' ms' : DASH);
  }

  // ---------------------------------------------------------------- power flow right now, today's energy

  function renderFlow(plant) {
    if (!$('flow-pv-kw')) return;
    var node = function (id, w, words) {
      var kw = isNum(w) ? w / 1000 : null;
      setText($('flow-' + id + '-kw'), kw === null ? DASH : fmtNum(Math.abs(kw), 2) + ' kW');
      var dir = kw === null || Math.abs(w) < IDLE_W ? words[0] : (w > 0 ? words[1] : words[2]);
      setText($('flow-' + id + '-dir'), dir);
      var el = $('flow-' + id + '-kw').parentNode;
      el.setAttribute('data-active', kw !== null && Math.abs(w) >= IDLE_W ? '1' : '0');
    };
    node('pv', meas(get(plant, 'pv', 'power_w')).value, [t('idle'), t('producing'), t('producing')]);
    node('grid', meas(get(plant, 'grid', 'power_w')).value, [t('idle'), t('importing'), t('exporting')]);
    node('house', meas(get(plant, 'load', 'power_w')).value, [t('idle'), t('consuming'), t('consuming')]);
    node('bess', meas(get(plant, 'bess', 'power_w')).value, [t('idle'), t('discharging'), t('charging')]);
  }

  /** Today's energy and savings (the site's day), every minute. */
  function loadToday() {
    if (!$('flow-today') || !window.EMS) return;
    window.EMS.request('GET', '/api/analytics/daily?days=1').then(function (res) {
      if (!res.ok) return;
      var days = Array.isArray(res.data.days) ? res.data.days : [];
      var d = days[days.length - 1];
      if (!d || !isNum(d.covered_h) || d.covered_h <= 0) return;
      setText($('flow-today'), t('today: PV {pv} kWh · used {load} kWh · bought {imp} kWh · saved {eur} €', {
        pv: fmtNum(d.pv_kwh, 1), load: fmtNum(d.load_kwh, 1), imp: fmtNum(d.import_kwh, 1),
        eur: fmtNum(Math.abs(d.savings_eur) < 0.005 ? 0 : d.savings_eur, 2) }));
    });
  }

  // ---------------------------------------------------------------- who overrides the strategy

  // Why the safety loop holds the battery, in words (the codes are `ems.safety.reasons.ReasonCode`).
  var SAFETY_WORDS = {
    device_offline: t('a device does not answer'),
    stale_input: t('a reading it needs is missing or out of date'),
    site_power_out_of_range: t('a measurement is out of range'),
    invalid_request: t('a measurement is out of range'),
    bms_alarm: t('the battery reports an alarm'),
    insulation: t('the insulation resistance is too low'),
    temperature: t('the battery is too hot'),
    dso_unknown_mode: t("the grid operator's box cannot be read"),
    internal_error: t('the EMS hit an internal error'),
    realtime_failed: t('the EMS hit an internal error'),
    pcs_write_failed: t('the inverter does not accept setpoints')
  };

  /** The banner when the grid operator, a safety rule or a fallback plan overrides the strategy. */
  function renderOverride(st) {
    var banner = $('override-banner');
    if (!banner) return;
    var pc = get(st, 'power_control') || {};
    var codes = Array.isArray(pc.reason_codes) ? pc.reason_codes : [];
    var has = function (code) { return codes.indexOf(code) >= 0; };
    var title = null, text = '', kind = '';
    if (has('dso_trip')) {
      kind = 'shutdown';
      title = t('Grid operator: shutdown');
      text = t('The grid operator has ordered the battery off: it stays at 0 W and the inverter is disabled until the order ends. The plan waits.');
    } else if (pc.state === 'safety') {
      kind = 'safety';
      var why = [];
      codes.forEach(function (c) { var w = SAFETY_WORDS[c]; if (w && why.indexOf(w) < 0) why.push(w); });
      title = t('Safety stop');
      text = t('The battery is held at 0 W because {why}. It resumes by itself when that is resolved.',
        { why: why.length ? why.join(', ') : t('an input is not safe') });
    } else if (has('dso_limit')) {
      kind = 'limited';
      var pct = get(st, 'plant', 'dso', 'limit_pct');
      pct = isNum(get(pct, 'value')) ? pct.value : pc.limit_pct;
      title = t('Grid operator: limit');
      text = t('The grid operator limits the battery to {pct} % of its power; the plan is followed within that.',
        { pct: fmtNum(isNum(pct) ? pct : 0, 0) });
    } else if (pc.enabled === false) {
      kind = 'off';
      title = t('Power control is off');
      text = t('The EMS does not control the inverter: no setpoints are written and orders of the grid operator are not acted on.');
    } else if (get(st, 'strategy', 'fallback')) {
      kind = 'fallback';
      title = t('Fallback plan');
      text = t('The optimiser could not make a plan; the battery follows a simple rule until the next plan.');
    }
    banner.hidden = title === null;
    banner.setAttribute('data-kind', kind);
    setText($('override-title'), title || '');
    setText($('override-text'), text);
    var card = $('kpi-strategy');
    if (card) card.classList.toggle('is-overridden', kind === 'shutdown' || kind === 'safety');
  }

  // ---------------------------------------------------------------- strategy control (operators)

  /** Auto or one strategy, for operators: posts the choice, then reports the plan made for it. */
  var lastState = null;  // the newest state shown
  var strategyControl = (function () {
    var form = $('strategy-form');
    var waitingSince = null;  // planned_at of the plan in force when the choice was sent
    var sentChoice = null;

    function choiceOf(st) {
      var mode = get(st, 'strategy', 'mode');
      var active = get(st, 'strategy', 'active');
      return mode === 'manual' && typeof active === 'string' ? active : 'auto';
    }

    function update(st) {
      if (!form) return;
      var select = $('strategy-choice');
      if (waitingSince !== null) {
        var plannedAt = get(st, 'strategy', 'planned_at');
        if (isNum(plannedAt) && plannedAt !== waitingSince && choiceOf(st) === sentChoice) {
          waitingSince = null;
          setText($('strategy-status'), t('New plan: {strategy}.', { strategy: humanStrategy(get(st, 'strategy', 'active')) }));
        }
        return;
      }
      if (document.activeElement !== select) select.value = choiceOf(st);
    }

    if (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var choice = $('strategy-choice').value;
        var status = $('strategy-status');
        status.className = 'form-status';
        setText(status, t('Replanning…'));
        var current = lastState || {};
        waitingSince = get(current, 'strategy', 'planned_at');
        if (!isNum(waitingSince)) waitingSince = -1;
        sentChoice = choice;
        var request = choice === 'auto' ? window.EMS.request('POST', '/api/strategy/auto', {})
          : window.EMS.request('POST', '/api/strategy', { strategy: choice });
        request.then(function (res) {
          if (res.status === 401) { window.EMS.toLogin(); return; }
          if (!res.ok) { waitingSince = null; window.EMS.showErrors(form, res); }
        });
      });
    }
    return { update: update };
  })();

  // ---------------------------------------------------------------- chart

  // The x axis is time: points are {x: epoch seconds, y: kW}, placed by their timestamp, the scale spans the
  // last WINDOW_S seconds up to the newest point (so it scrolls) and its ticks fall on whole minutes of the
  // site's clock (util's timeTicks).
  var GAP_FACTOR = 3;             // a step longer than this many typical intervals is drawn as a gap...
  var MIN_GAP_S = 5;              // ...but never one shorter than this (jitter of a fast stream is no gap)
  var TYPICAL_OF = 15;            // the typical interval is the median of this many recent ones

  var chart = null;
  var tsList = [];        // epoch seconds of the chart's points (gap markers included), oldest first
  var lastRealTs = null;  // the newest point that carries values (not a gap marker)
  var intervals = [];     // the last TYPICAL_OF intervals between points with values, in seconds
  var seeded = false;
  var pending = [];       // points that arrived before the seed finished

  function cssVar(name, fallback) {
    try {
      var v = getComputedStyle(document.documentElement).getPropertyValue(name);
      return (v && v.trim()) || fallback;
    } catch (e) {
      return fallback;
    }
  }

  function median(list) {
    var s = list.slice().sort(function (a, b) { return a - b; });
    return s.length ? s[Math.floor(s.length / 2)] : null;
  }

  function initChart() {
    var canvas = $('power-chart');
    if (!canvas || typeof window.Chart !== 'function') return;
    function ds(label, color) {
      return {
        label: label,
        data: [],
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        pointRadius: 0,
        pointHoverRadius: 3,
        tension: 0,
        spanGaps: false
      };
    }
    try {
      chart = new window.Chart(canvas, {
        type: 'line',
        data: {
          datasets: [
            ds(t('PV'), cssVar('--c-pv', '#f59e0b')),
            ds(t('Load'), cssVar('--c-load', '#3b82f6')),
            ds(t('Grid'), cssVar('--c-grid', '#6b7280')),
            ds(t('BESS'), cssVar('--c-bess', '#16a34a'))
          ]
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          normalized: true,
          parsing: { xAxisKey: 'x', yAxisKey: 'y' },
          onResize: function (c, size) {
            var lim = size && size.width < 520 ? 4 : 8;
            if (c.options.scales.x.ticks.maxTicksLimit !== lim) c.options.scales.x.ticks.maxTicksLimit = lim;
          },
          interaction: { mode: 'index', intersect: false },
          plugins: {
            legend: { position: 'top', align: 'end', labels: { boxWidth: 12, boxHeight: 2 } },
            tooltip: {
              callbacks: {
                title: function (items) {
                  var x = items && items.length && items[0].parsed ? items[0].parsed.x : null;
                  return isNum(x) ? hms(x) : '';
                },
                label: function (ctx) {
                  var y = ctx.parsed ? ctx.parsed.y : null;
                  return ' ' + ctx.dataset.label + ': ' + (isNum(y) ? fmtNum(y, 2) + ' kW' : DASH);
                }
              }
            }
          },
          scales: {
            x: {
              type: 'linear',
              bounds: 'data',
              offset: false,
              afterBuildTicks: function (axis) {
                if (!tsList.length) { axis.ticks = []; return; }
                var lim = get(axis, 'options', 'ticks', 'maxTicksLimit');
                var byWidth = Math.floor((axis.width || 600) / 70);
                var most = Math.min(isNum(lim) ? lim : 8, Math.max(2, byWidth));
                axis.ticks = U.timeTicks(axis.min, axis.max, most).ticks.map(function (v) { return { value: v }; });
              },
              ticks: {
                autoSkip: false,
                maxTicksLimit: (canvas.parentNode && canvas.parentNode.clientWidth < 520) ? 4 : 8,
                maxRotation: 0,
                callback: function (value) { return U.fmtTime(value, 'hm'); }
              },
              grid: { display: false }
            },
            y: {
              type: 'linear',
              title: { display: true, text: 'kW' },
              grid: {
                color: function (ctx) {
                  return ctx.tick && ctx.tick.value === 0 ? 'rgba(0,0,0,0.35)' : 'rgba(0,0,0,0.07)';
                }
              }
            }
          }
        }
      });
    } catch (e) {
      chart = null;
      if (window.console) console.warn('power chart unavailable:', e);
    }
  }

  /** Point from an /api/state-shaped object; stale or missing values become gaps. */
  function pointFromState(st) {
    var ts = get(st, 'ts');
    if (!isNum(ts)) return null;
    function kw(path) {
      var m = meas(get.apply(null, [st, 'plant'].concat(path)));
      return (m.stale || !isNum(m.value)) ? null : toKw(m.value);
    }
    return {
      ts: ts,
      pv: kw(['pv', 'power_w']),
      load: kw(['load', 'power_w']),
      grid: kw(['grid', 'power_w']),
      bess: kw(['bess', 'power_w'])
    };
  }

  function pointFromRow(r) {
    if (!r || !isNum(r.ts)) return null;
    return {
      ts: r.ts,
      pv: toKw(r.pv_power_w),
      load: toKw(r.load_power_w),
      grid: toKw(r.grid_power_w),
      bess: toKw(r.bess_power_w)
    };
  }

  function pushPoint(data, ts, pt) {
    tsList.push(ts);
    data.datasets[0].data.push({ x: ts, y: pt ? pt.pv : null });
    data.datasets[1].data.push({ x: ts, y: pt ? pt.load : null });
    data.datasets[2].data.push({ x: ts, y: pt ? pt.grid : null });
    data.datasets[3].data.push({ x: ts, y: pt ? pt.bess : null });
  }

  /** Append points (must be oldest first), trim the window, redraw once. A step much longer than the typical
   *  interval gets a point without values in it, so the lines break there instead of bridging it. */
  function addPoints(points) {
    if (!chart || !points || !points.length) return;
    var data = chart.data;
    var added = 0;
    for (var i = 0; i < points.length; i++) {
      var pt = points[i];
      if (!pt || !isNum(pt.ts)) continue;
      if (tsList.length && pt.ts <= tsList[tsList.length - 1]) continue; // duplicate / out of order
      if (lastRealTs !== null) {
        var step = pt.ts - lastRealTs;
        var typical = median(intervals);
        if (typical !== null && step > Math.max(GAP_FACTOR * typical, MIN_GAP_S)) {
          pushPoint(data, lastRealTs + step / 2, null);
        }
        intervals.push(step);
        if (intervals.length > TYPICAL_OF) intervals.shift();
      }
      pushPoint(data, pt.ts, pt);
      lastRealTs = pt.ts;
      added++;
    }
    if (!added) return;
    var newest = tsList[tsList.length - 1];
    var drop = 0;
    while (drop < tsList.length - 1 && (tsList[drop] < newest - WINDOW_S || tsList.length - drop > MAX_POINTS)) drop++;
    if (drop > 0) {
      tsList.splice(0, drop);
      for (var d = 0; d < data.datasets.length; d++) data.datasets[d].data.splice(0, drop);
    }
    var x = chart.options.scales.x;
    x.min = newest - WINDOW_S;
    x.max = newest;
    chart.update('none');
  }

  function pushLive(st) {
    var pt = pointFromState(st);
    if (!pt) return;
    if (seeded) addPoints([pt]); else pending.push(pt);
  }

  function seedChart() {
    fetchJson('/api/monitoring/telemetry?minutes=15&limit=900')
      .then(function (body) {
        var rows = Array.isArray(get(body, 'rows')) ? body.rows : [];
        var pts = [];
        for (var i = 0; i < rows.length; i++) {
          var pt = pointFromRow(rows[i]);
          if (pt) pts.push(pt);
        }
        pts.sort(function (a, b) { return a.ts - b.ts; });
        return pts;
      })
      .catch(function () { return []; })
      .then(function (pts) {
        seeded = true;
        addPoints(pts.concat(pending));
        pending = [];
      });
  }

  // ---------------------------------------------------------------- data

  /** Hand the state to the page's other scripts (plan.js) without coupling them to the SSE stream. */
  function shareState(st) {
    if (!st || typeof st !== 'object' || typeof window.CustomEvent !== 'function') return;
    try {
      document.dispatchEvent(new CustomEvent('ems:state', { detail: st }));
    } catch (e) {
      if (window.console) console.warn('state listener failed:', e);
    }
  }

  function fetchJson(url) {
    return fetch(url, { cache: 'no-cache', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
        return r.json();
      });
  }

  /** Strategy titles from the registry; the card is re-titled once they are known. */
  function loadStrategyTitles() {
    fetchJson('/api/strategies')
      .then(function (body) {
        var list = Array.isArray(get(body, 'strategies')) ? body.strategies : [];
        var titles = {};
        for (var i = 0; i < list.length; i++) {
          var name = get(list[i], 'name'), title = get(list[i], 'title');
          if (typeof name === 'string' && typeof title === 'string' && title) titles[name] = title;
        }
        strategyTitles = titles;
        if (shownStrategy !== null) setText($('kpi-strategy-value'), humanStrategy(shownStrategy));
      })
      .catch(function (e) { if (window.console) console.warn('strategy titles unavailable:', e && e.message); });
  }

  function onState(st, fromEvent) {
    lastState = st;
    try {
      renderState(st);
      if (fromEvent) pushLive(st);
    } catch (e) {
      if (window.console) console.warn('dashboard update failed:', e);
    }
    shareState(st);
  }

  // ---------------------------------------------------------------- start

  function start() {
    initChart();
    seedChart();
    loadStrategyTitles();
    U.liveState(onState);
    loadToday();
    setInterval(function () { if (!document.hidden) loadToday(); }, 60000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
