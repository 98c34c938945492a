/* Phoenyra EMS – analytics page.
 * Data: GET /api/analytics/summary?days=30, /api/analytics/daily?days=30, /api/analytics/plan_vs_actual?day=.
 * Money is against the same site without the battery (same load and PV, export capped as then in force).
 */
(function () {
  'use strict';

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, t = U.t, fmtNum = U.fmtNum;
  var DAYS = 30;
  var DASH = '\u2014';
  var STRATEGY_LABELS = {
    arbitrage: t('Arbitrage'), peak_shaving: t('Peak shaving'), self_consumption: t('Self-consumption'),
    load_balancing: t('Load balancing')
  };
  var STRATEGY_COLOURS = { arbitrage: '#c2410c', peak_shaving: '#2563eb', self_consumption: '#16a34a',
    load_balancing: '#7c3aed' };

  function strategyLabel(name) {
    return Object.prototype.hasOwnProperty.call(STRATEGY_LABELS, name) ? STRATEGY_LABELS[name] : String(name);
  }

  function euro(v, digits) {
    if (!isNum(v)) return DASH;
    var d = digits === undefined ? 2 : digits;
    return fmtNum(Math.abs(v) < 0.5 * Math.pow(10, -d) ? 0 : v, d) + ' \u20ac';  // no "-0.00 €"
  }
  function pct(v) { return isNum(v) ? fmtNum(v, 0) + ' %' : DASH; }

  var setText = U.setTextById, chart = U.drawChart;
  function getJson(url) { return window.EMS.getJson(url); }

  function renderSummary(s) {
    setText('an-savings-value', euro(s.savings_eur));
    setText('an-daily-value', euro(s.avg_daily_savings_eur));
    setText('an-days-sub', t('{n} of {days} days with data', { n: fmtNum(s.days_with_data || 0, 0), days: fmtNum(DAYS, 0) }));
    setText('an-cycles-value', isNum(s.full_cycles) ? fmtNum(s.full_cycles, 1) : DASH);
    setText('an-soc-sub', isNum(s.avg_soc_pct) ? t('average state of charge {pct}', { pct: pct(s.avg_soc_pct) }) : '\u00a0');
    setText('an-autarky-value', pct(s.self_sufficiency_pct));
    setText('an-self-sub', isNum(s.self_consumption_pct)
      ? t('own PV used on site: {pct}', { pct: pct(s.self_consumption_pct) }) : '\u00a0');

    var share = s.strategy_share_pct || {};
    var names = Object.keys(share);
    chart('an-pie', {
      type: 'doughnut',
      data: { labels: names.map(strategyLabel),
        datasets: [{ data: names.map(function (n) { return share[n]; }),
          backgroundColor: names.map(function (n) { return STRATEGY_COLOURS[n] || '#6b7280'; }) }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { tooltip: { callbacks: { label: function (c) { return c.label + ': ' + pct(c.parsed); } } } } }
    });

    var runs = Array.isArray(s.last_optimizations) ? s.last_optimizations : [];
    U.fillRows($('an-runs-body'), runs, 6, t('No optimization yet.'), function (r) {
      return [window.EMS.fmtTime(r.ts), strategyLabel(r.strategy), euro(r.expected_profit_eur), String(r.status || ''),
        String(r.solver || ''), isNum(r.duration_ms) ? fmtNum(r.duration_ms, 1) + ' ms' : DASH];
    }, { testid: 'an-run', data: [3, 4] });  // status and solver are the solver's codes
  }

  function renderDaily(d) {
    var days = (Array.isArray(d.days) ? d.days : []).filter(function (x) { return isNum(x.covered_h) && x.covered_h > 0; });
    $('an-bars-empty').hidden = days.length > 0;
    chart('an-bars', {
      type: 'bar',
      data: { labels: days.map(function (x) { return x.date; }),
        datasets: [{ label: t('Savings'), data: days.map(function (x) { return x.savings_eur; }),
          backgroundColor: days.map(function (x) { return x.savings_eur >= 0 ? '#16a34a' : '#dc2626'; }) }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false },
        tooltip: { callbacks: { label: function (c) { return euro(c.parsed.y); } } } },
        scales: { y: { ticks: { callback: function (v) { return fmtNum(v, 2); } } } } }
    });
  }

  function renderPlanVsActual(p) {
    var steps = Array.isArray(p.steps) ? p.steps : [];
    var kw = function (side) {
      return steps.map(function (s) { var v = s[side] && s[side].bess_power_w; return isNum(v) ? v / 1000 : null; });
    };
    chart('an-pva', {
      type: 'line',
      data: { labels: steps.map(function (s) { return U.fmtTime(s.ts, 'hm'); }),
        datasets: [
          { label: t('Planned'), data: kw('planned'), borderColor: '#9ca3af', borderDash: [4, 3], pointRadius: 0, stepped: true },
          { label: t('Measured'), data: kw('actual'), borderColor: '#16a34a', pointRadius: 0, stepped: true }
        ] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, spanGaps: false,
        scales: { y: { title: { display: true, text: 'kW' }, ticks: { callback: function (v) { return fmtNum(v, 1); } } } } }
    });
    var s = p.summary || {};
    setText('an-pva-summary', s.steps_compared
      ? t('{n} quarter hours compared: planned savings {planned}, realised {realised}.', {
        n: fmtNum(s.steps_compared, 0), planned: euro(s.planned_savings_eur), realised: euro(s.realised_savings_eur) })
      : t('No quarter hour of this day has both a plan and measurements yet.'));
  }

  function loadDay(day) {
    getJson('/api/analytics/plan_vs_actual' + (day ? '?day=' + encodeURIComponent(day) : ''))
      .then(function (p) {
        renderPlanVsActual(p);
        if (!$('an-day').value) $('an-day').value = p.date;
      })
      .catch(function (e) { setText('an-pva-summary', t('Unavailable: {error}', { error: e.message })); });
  }

  function start() {
    getJson('/api/analytics/summary?days=' + DAYS).then(renderSummary)
      .catch(function (e) { setText('an-period', t('Unavailable: {error}', { error: e.message })); });
    getJson('/api/analytics/daily?days=' + DAYS).then(renderDaily).catch(function () { $('an-bars-empty').hidden = false; });
    loadDay(null);
    $('an-day').addEventListener('change', function () { if (this.value) loadDay(this.value); });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
