/* Phoenyra EMS – forecasts page.
 * Data: GET /api/forecast (price, consumer price, load, PV as series with is_forecast and quantiles),
 * GET /api/analytics/plan_vs_actual?day= (the plans' load and PV against the measurements: recent accuracy).
 */
(function () {
  'use strict';

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, t = U.t, fmtNum = U.fmtNum;
  var DASH = '\u2014';
  var SOURCE_LABELS = {
    awattar_at: t('aWATTar Austria'), awattar_de: t('aWATTar Germany'), entsoe: t('ENTSO-E'),
    bundled: t('bundled data'), history: t('this site’s history'), openweathermap: t('weather forecast'),
    standard_profile: t('standard profile'), climatology: t('clear-sky climatology')
  };

  function label(code) {
    return Object.prototype.hasOwnProperty.call(SOURCE_LABELS, code) ? SOURCE_LABELS[code] : String(code || DASH);
  }

  var setText = U.setTextById, chart = U.drawChart;

  function times(series) {
    var out = [];
    for (var i = 0; i < series.values.length; i++) out.push(series.start_ts + i * series.step_s);
    return out;
  }

  function baseOptions(unit, digits) {
    return { responsive: true, maintainAspectRatio: false, animation: false, interaction: { mode: 'index', intersect: false },
      scales: { x: { ticks: { maxTicksLimit: 8, autoSkip: true } },
        y: { title: { display: true, text: unit }, ticks: { callback: function (v) { return fmtNum(v, digits); } } } },
      plugins: { tooltip: { callbacks: { label: function (c) {
        return c.dataset.label + ': ' + (isNum(c.parsed.y) ? fmtNum(c.parsed.y, digits) + ' ' + unit : DASH);
      } } } } };
  }

  /** The price: published values solid, forecast ones dashed; the boundary is where one ends. */
  function renderPrice(series) {
    if (!series || !Array.isArray(series.values)) return;
    var ts = times(series);
    var known = [], guessed = [];
    var flags = Array.isArray(series.is_forecast) ? series.is_forecast : [];
    series.values.forEach(function (v, i) {
      var ct = isNum(v) ? v * 100 : null;
      var isGuess = flags[i] === true;
      known.push(isGuess ? null : ct);
      guessed.push(isGuess || (i + 1 < flags.length && flags[i + 1] === true) ? ct : null);  // joined at the boundary
    });
    var firstGuess = flags.indexOf(true);
    setText('fc-price-meta', 'ct/kWh \u00b7 ' + (firstGuess < 0 ? t('all published')
      : t('published until {time}, forecast after', { time: U.fmtTime(ts[firstGuess], 'datetime') })));
    chart('fc-price', {
      type: 'line',
      data: { labels: ts.map(function (x) { return U.fmtTime(x, 'hm'); }),
        datasets: [
          { label: t('Published'), data: known, borderColor: '#c2410c', pointRadius: 0, stepped: true, spanGaps: false },
          { label: t('Forecast'), data: guessed, borderColor: '#c2410c', borderDash: [5, 4], pointRadius: 0, stepped: true,
            spanGaps: false }
        ] },
      options: baseOptions('ct/kWh', 1)
    });
  }

  /** PV or load with its p10–p90 band where the model gives one. */
  function renderPower(id, metaId, series, colour, band) {
    if (!series || !Array.isArray(series.values)) return;
    var ts = times(series);
    var q = series.quantiles || {};
    var lo = Array.isArray(q.p10) ? q.p10 : null, hi = Array.isArray(q.p90) ? q.p90 : null;
    var datasets = [{ label: t('Forecast'), data: series.values, borderColor: colour, pointRadius: 0, order: 0 }];
    if (lo && hi) {
      datasets.push({ label: t('likely up to'), data: hi, borderColor: 'transparent', backgroundColor: band,
        pointRadius: 0, fill: '+1', order: 1 });
      datasets.push({ label: t('likely at least'), data: lo, borderColor: 'transparent', pointRadius: 0, order: 2 });
    }
    setText(metaId, 'kW \u00b7 ' + t('{source}, model {model}', { source: label(series.source), model: String(series.model || DASH) }) +
      (lo && hi ? ' \u00b7 ' + t('band: 10–90 %') : ''));
    var options = baseOptions('kW', 2);
    options.plugins.filler = { propagate: false };
    chart(id, { type: 'line', data: { labels: ts.map(function (x) { return U.fmtTime(x, 'hm'); }), datasets: datasets },
      options: options });
  }

  function renderAccuracy(days) {
    var rows = days.filter(function (d) { return d && d.summary && d.summary.steps_compared; });
    var kw = function (stat, key) { var v = stat && stat[key]; return isNum(v) ? fmtNum(v / 1000, 2) + ' kW' : DASH; };
    U.fillRows($('fc-accuracy-body'), rows, 6, t('No quarter hour with both a plan and measurements yet.'), function (d) {
      var e = d.summary.errors || {};
      return [d.date, fmtNum(d.summary.steps_compared, 0), kw(e.pv_power_w, 'mean_abs_error'), kw(e.pv_power_w, 'bias'),
        kw(e.load_power_w, 'mean_abs_error'), kw(e.load_power_w, 'bias')];
    }, { testid: 'fc-accuracy-row' });
  }

  function getJson(url) { return window.EMS.getJson(url); }

  function start() {
    getJson('/api/forecast').then(function (f) {
      if (isNum(f.ts)) setText('fc-made', t('Made {time}.', { time: U.fmtTime(f.ts, 'datetime') }));
      renderPrice(f.consumer_price || f.price);
      renderPower('fc-pv', 'fc-pv-meta', f.pv, '#f59e0b', 'rgba(245, 158, 11, 0.2)');
      renderPower('fc-load', 'fc-load-meta', f.load, '#3b82f6', 'rgba(59, 130, 246, 0.2)');
    }).catch(function (e) { setText('fc-made', t('Unavailable: {error}', { error: e.message })); });
    // Today and yesterday in the site's calendar (the API answers with today's date there).
    getJson('/api/analytics/plan_vs_actual').then(function (today) {
      var day = new Date(today.date + 'T12:00:00Z');
      day.setUTCDate(day.getUTCDate() - 1);
      return getJson('/api/analytics/plan_vs_actual?day=' + day.toISOString().slice(0, 10))
        .then(function (yesterday) { return [today, yesterday]; }, function () { return [today]; });
    }).then(renderAccuracy).catch(function () { renderAccuracy([]); });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
