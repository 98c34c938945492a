/* Phoenyra EMS – dashboard: the optimizer's plan.
 * Two charts from GET /api/plan (24 h plan powers; import price + planned SoC) and the strategy's reason
 * under the strategy card. The plan is fetched every 60 s, and at once when the live state (DOM event
 * "ems:state", sent by dashboard.js for every /api/state or SSE state) shows a new plan (its planned_at),
 * another strategy, profit or reason. Charts are only redrawn when the plan changed. Must never throw on
 * missing fields.
 */
(function () {
  'use strict';

  var REFRESH_MS = 60 * 1000;
  var DASH = '\u2014';

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, get = U.get, t = U.t, fmtNum = U.fmtNum;

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function hhmm(ts) { return U.fmtTime(ts, 'hm'); }

  function kw(w) { return isNum(w) ? w / 1000 : null; }
  function ct(eur) { return isNum(eur) ? eur * 100 : null; }
  function num(v) { return isNum(v) ? v : null; }

  function cssVar(name, fallback) {
    try {
      var v = getComputedStyle(document.documentElement).getPropertyValue(name);
      return (v && v.trim()) || fallback;
    } catch (e) {
      return fallback;
    }
  }

  function fmt(v, digits, unit) { return isNum(v) ? fmtNum(v, digits) + ' ' + unit : DASH; }

  // ---------------------------------------------------------------- charts

  var planChart = null;
  var priceChart = null;

  function narrow(canvas) { return !!(canvas.parentNode && canvas.parentNode.clientWidth < 520); }

  function onResize(c, size) {
    var lim = size && size.width < 520 ? 4 : 8;
    if (c.options.scales.x.ticks.maxTicksLimit !== lim) c.options.scales.x.ticks.maxTicksLimit = lim;
  }

  function xScale(canvas) {
    return {
      type: 'category',
      ticks: { autoSkip: true, maxTicksLimit: narrow(canvas) ? 4 : 8, maxRotation: 0 },
      grid: { display: false }
    };
  }

  function zeroLine(ctx) {
    return ctx.tick && ctx.tick.value === 0 ? 'rgba(0,0,0,0.35)' : 'rgba(0,0,0,0.07)';
  }

  function line(label, color, extra) {
    var ds = {
      type: 'line',
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
    for (var k in extra) if (Object.prototype.hasOwnProperty.call(extra, k)) ds[k] = extra[k];
    return ds;
  }

  function baseOptions(canvas) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      normalized: true,
      onResize: onResize,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { position: 'top', align: 'end', labels: { boxWidth: 12, boxHeight: 2 } },
        tooltip: {}
      },
      scales: { x: xScale(canvas) }
    };
  }

  function initPlanChart() {
    var canvas = $('plan-chart');
    if (!canvas) return null;
    var discharge = cssVar('--c-bess', '#16a34a');
    var charge = cssVar('--c-bess-charge', '#86efac');
    var opts = baseOptions(canvas);
    opts.plugins.tooltip.callbacks = {
      label: function (ctx) {
        var y = ctx.parsed ? ctx.parsed.y : null;
        var s = ' ' + ctx.dataset.label + ': ' + fmt(y, 2, 'kW');
        if (ctx.datasetIndex === 0 && isNum(y) && Math.abs(y) >= 0.01) s += ' (' + (y > 0 ? t('discharging') : t('charging')) + ')';
        if (ctx.datasetIndex === 3 && isNum(y) && Math.abs(y) >= 0.01) s += ' (' + (y > 0 ? t('import') : t('export')) + ')';
        return s;
      }
    };
    opts.scales.y = { type: 'linear', title: { display: true, text: 'kW' }, grid: { color: zeroLine } };
    // The bars' colour depends on the sign; the legend shows the discharging colour, in dataset order.
    opts.plugins.legend.labels.sort = function (a, b) { return a.datasetIndex - b.datasetIndex; };
    opts.plugins.legend.labels.generateLabels = function (chart) {
      var items = window.Chart.defaults.plugins.legend.labels.generateLabels(chart);
      for (var i = 0; i < items.length; i++) {
        if (items[i].datasetIndex === 0) {
          items[i].fillStyle = discharge;
          items[i].strokeStyle = discharge;
        }
      }
      return items;
    };
    return new window.Chart(canvas, {
      type: 'bar',
      data: {
        labels: [],
        datasets: [
          {
            type: 'bar',
            label: t('BESS'),
            data: [],
            backgroundColor: function (ctx) { return ctx.raw < 0 ? charge : discharge; },
            borderWidth: 0,
            barPercentage: 1.0,
            categoryPercentage: 0.85,
            order: 2
          },
          line(t('PV'), cssVar('--c-pv', '#f59e0b'), { order: 1 }),
          line(t('Load'), cssVar('--c-load', '#3b82f6'), { order: 1 }),
          line(t('Grid'), cssVar('--c-grid', '#6b7280'), { order: 1 })
        ]
      },
      options: opts
    });
  }

  function initPriceChart() {
    var canvas = $('price-soc-chart');
    if (!canvas) return null;
    var opts = baseOptions(canvas);
    opts.plugins.tooltip.callbacks = {
      label: function (ctx) {
        var y = ctx.parsed ? ctx.parsed.y : null;
        return ctx.datasetIndex === 0
          ? ' ' + t('Import price: {value}', { value: fmt(y, 2, 'ct/kWh') })
          : ' ' + t('SoC (end of step): {value}', { value: fmt(y, 1, '%') });
      }
    };
    opts.scales.y = {
      type: 'linear', position: 'left', title: { display: true, text: 'ct/kWh' },
      grid: { color: zeroLine }
    };
    opts.scales.soc = {
      type: 'linear', position: 'right', min: 0, max: 100, title: { display: true, text: t('SoC %') },
      grid: { drawOnChartArea: false }
    };
    return new window.Chart(canvas, {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          // A price holds for its whole step: 'before' draws the horizontal at the step's own value.
          line(t('Import price'), cssVar('--c-price', '#7c3aed'), { yAxisID: 'y', stepped: 'before' }),
          line(t('SoC'), cssVar('--c-soc', '#0d9488'), { yAxisID: 'soc' })
        ]
      },
      options: opts
    });
  }

  function initCharts() {
    if (typeof window.Chart !== 'function') return;
    try {
      planChart = initPlanChart();
      priceChart = initPriceChart();
    } catch (e) {
      if (window.console) console.warn('plan charts unavailable:', e);
    }
  }

  // ---------------------------------------------------------------- rendering

  var shownKey = null;  // identity of the plan on screen; redraw only when it changes

  function setEmpty(empty, why) {
    var ids = ['plan-empty', 'price-soc-empty'];
    for (var i = 0; i < ids.length; i++) {
      var el = $(ids[i]);
      if (!el) continue;
      el.hidden = !empty;
      var detail = el.querySelector('.plan-empty-why');
      setText(detail, empty && typeof why === 'string' ? why : '');
    }
  }

  function fill(chart, labels, series) {
    if (!chart) return;
    chart.data.labels = labels;
    for (var i = 0; i < series.length && i < chart.data.datasets.length; i++) chart.data.datasets[i].data = series[i];
    chart.update('none');
  }

  function renderPlan(body) {
    var plan = get(body, 'plan');
    var steps = Array.isArray(get(plan, 'steps')) ? plan.steps : [];
    var meta = $('plan-meta');
    var key = plan && typeof plan === 'object'
      ? [get(body, 'planned_at'), get(body, 'runs'), plan.start_ts, plan.strategy, plan.status, steps.length].join('|')
      : 'none|' + get(body, 'last_error');
    if (key === shownKey) return;
    shownKey = key;

    var labels = [], bess = [], pv = [], load = [], grid = [], price = [], soc = [];
    for (var i = 0; i < steps.length; i++) {
      var s = steps[i];
      if (!s || !isNum(s.ts)) continue;
      labels.push(hhmm(s.ts));
      bess.push(kw(s.bess_power_w));
      pv.push(kw(s.pv_power_w));
      load.push(kw(s.load_power_w));
      grid.push(kw(s.grid_power_w));
      price.push(ct(s.import_price_eur_per_kwh));
      soc.push(num(s.soc_pct));
    }
    fill(planChart, labels, [bess, pv, load, grid]);
    fill(priceChart, labels.slice(), [price, soc]);

    if (!labels.length) {
      var err = get(body, 'last_error');
      setEmpty(true, typeof err === 'string' && err ? err : t('The optimizer has not produced a plan yet.'));
      setText(meta, 'kW');
      return;
    }
    setEmpty(false, '');
    var planned = get(body, 'planned_at');
    setText(meta, 'kW' + (isNum(planned) ? ' \u00b7 ' + t('planned {time}', { time: hhmm(planned) }) : ''));
    // Until the live state arrives, the plan is the best source for the reason line.
    if (!stateSeen) renderReason(plan.reason, plan.fallback === true, plan.status);
  }

  // ---------------------------------------------------------------- reason + fallback badge

  var stateSeen = false;

  function renderReason(reason, fallback, status) {
    var el = $('strategy-reason');
    setText(el, typeof reason === 'string' && reason ? reason : '');
    var badge = $('strategy-fallback');
    if (badge) {
      badge.hidden = !fallback;
      var why = !fallback ? '' : (typeof status === 'string' && status
        ? t('following the safe self-consumption fallback (optimization {status})', { status: status })
        : t('following the safe self-consumption fallback'));
      if (why) badge.setAttribute('title', why); else badge.removeAttribute('title');
    }
  }

  // ---------------------------------------------------------------- data

  var inflight = false;
  var again = false;
  var fetchedKey = null;   // state key when the last fetch started
  var lastStateKey = null;

  function fetchPlan() {
    if (inflight) { again = true; return; }
    inflight = true;
    again = false;
    fetchedKey = lastStateKey;
    fetch('/api/plan', { cache: 'no-cache', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error('/api/plan: HTTP ' + r.status);
        return r.json();
      })
      .then(function (body) {
        try {
          renderPlan(body);
        } catch (e) {
          if (window.console) console.warn('plan update failed:', e);
        }
      })
      .catch(function (e) {
        // keep the last plan on screen; the next refresh tries again
        if (window.console) console.warn('plan unavailable:', e && e.message);
      })
      .then(function () {
        inflight = false;
        if (again) fetchPlan();
      });
  }

  function onState(ev) {
    try {
      followState(ev && ev.detail);
    } catch (e) {
      if (window.console) console.warn('plan state update failed:', e);
    }
  }

  function followState(st) {
    var strat = get(st, 'strategy');
    if (!strat || typeof strat !== 'object') return;
    stateSeen = true;
    renderReason(strat.reason, strat.fallback === true, strat.status);
    var profit = get(st, 'expected_profit_24h_eur');
    // planned_at identifies the plan: a re-plan with the same strategy, profit and reason still has new steps.
    var plannedAt = isNum(strat.planned_at) ? strat.planned_at : null;
    lastStateKey = [plannedAt, strat.active, isNum(profit) ? profit : null, strat.reason, strat.status,
      strat.fallback].join('|');
    if (lastStateKey !== fetchedKey) fetchPlan();
  }

  function start() {
    initCharts();
    document.addEventListener('ems:state', onState);
    // The first live state (a few hundred ms away) names the plan and fetches it; without one, fetch anyway.
    setTimeout(function () { if (!stateSeen && !inflight) fetchPlan(); }, U.INITIAL_WAIT_MS);
    setInterval(function () {
      if (!document.hidden) fetchPlan();
    }, REFRESH_MS);
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden) fetchPlan();
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
