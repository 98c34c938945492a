/* Phoenyra EMS – monitoring page.
 * Plain JS, no build step. Data: GET /api/state, then SSE /api/events (event "state", same JSON); the history
 * charts from /api/history/state and the Sankey from /api/history/energy_flows, over one range that both range
 * pickers show (kept in the address's #range= and in localStorage, so a reload or a shared link keeps it).
 * Shows power control, feed-in limitation, grid connection, battery telemetry and the Modbus devices; with the simulator
 * running (and the right to operate) its event buttons POST to /api/simulator/events via EMS.request.
 * Everything goes into the page as textContent; it must never throw on missing fields.
 */
(function () {
  'use strict';

  var DASH = '\u2014';
  var PC_STATES = ['normal', 'limited', 'safety', 'shutdown'];

  var U = window.EMSUtil, $ = U.$, isNum = U.isNum, get = U.get, t = U.t, fmtNum = U.fmtNum;

  // Labels for the codes the state carries; the code itself stays in data-state.
  var PC_STATE_LABELS = {
    normal: t('normal'), limited: t('limited'), safety: t('safety'), shutdown: t('shutdown')
  };
  var DEVICE_STATE_LABELS = {
    starting: t('starting'), connecting: t('connecting'), online: t('online'), degraded: t('degraded'),
    offline: t('offline')
  };

  function label(table, code) {
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }

  /** A measurement ({value, stale, ...}) or a bare value → {value, stale}. */
  function meas(m) {
    if (m === null || m === undefined) return { value: null, stale: false };
    if (typeof m !== 'object' || Array.isArray(m)) return { value: m, stale: false };
    return { value: m.value === undefined ? null : m.value, stale: m.stale === true };
  }

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmtW(w) {
    if (!isNum(w)) return DASH;
    return Math.abs(w) >= 1000 ? fmtNum(w / 1000, 2) + ' kW' : fmtNum(Math.round(w), 0) + ' W';
  }

  function fmtUnit(v, digits, unit) { return isNum(v) ? fmtNum(v, digits) + (unit ? ' ' + unit : '') : DASH; }

  /** Fill a <ul> with items (strings); `empty` when there are none. Rebuilt only when the text changed. */
  function fillList(ul, items, empty, decorate) {
    if (!ul) return;
    var key = JSON.stringify(items);
    if (ul.getAttribute('data-key') === key) return;
    ul.setAttribute('data-key', key);
    while (ul.firstChild) ul.removeChild(ul.firstChild);
    if (!items.length) { ul.appendChild(el('li', 'muted', empty)); return; }
    for (var i = 0; i < items.length; i++) {
      var li = el('li', null, items[i].text);
      if (decorate) decorate(li, items[i]);
      ul.appendChild(li);
    }
  }

  // ---------------------------------------------------------------- power control

  function renderPowerControl(pc) {
    pc = pc && typeof pc === 'object' ? pc : {};
    var state = typeof pc.state === 'string' ? pc.state.toLowerCase() : '';
    var stEl = $('pc-state');
    setText(stEl, state ? label(PC_STATE_LABELS, state) : DASH);
    if (stEl) stEl.setAttribute('data-state', PC_STATES.indexOf(state) >= 0 ? state : 'unknown');
    var disabled = $('pc-disabled');
    if (disabled) disabled.hidden = pc.enabled !== false;

    var sp = pc.effective_setpoint_w;
    var spText = fmtW(sp);
    if (isNum(sp) && Math.abs(sp) >= 1) spText += ' (' + (sp > 0 ? t('discharging') : t('charging')) + ')';
    setText($('pc-setpoint'), spText);
    var lim = isNum(pc.limit_pct) ? fmtNum(Math.round(pc.limit_pct), 0) + ' %' : DASH;
    if (isNum(pc.limit_w)) lim += ' \u00b7 ' + fmtW(pc.limit_w);
    setText($('pc-limit'), lim);
    setText($('pc-export'), fmtW(pc.export_limit_w));

    // reason_words[i] is what reason_codes[i] means in the reader's language; reasons[i] the technical text
    // (point, device, limit), one hover away.
    var reasons = [];
    var codes = Array.isArray(pc.reason_codes) ? pc.reason_codes : [];
    var words = Array.isArray(pc.reason_words) ? pc.reason_words : [];
    if (Array.isArray(pc.reasons)) {
      for (var i = 0; i < pc.reasons.length; i++) {
        var r = pc.reasons[i], w = words[i];
        if (typeof r !== 'string' || !r) continue;
        var text = typeof w === 'string' && w ? w.charAt(0).toUpperCase() + w.slice(1) : r;
        reasons.push({ text: text, detail: r, code: typeof codes[i] === 'string' ? codes[i] : '' });
      }
    }
    fillList($('pc-reasons'), reasons, t('none'), function (li, item) {
      if (item.code) li.setAttribute('data-code', item.code);
      if (item.detail !== item.text) li.title = item.detail;
    });
  }

  // ---------------------------------------------------------------- grid connection

  function utilLevel(pct) {
    if (!isNum(pct)) return 'unknown';
    return pct < 50 ? 'ok' : (pct <= 80 ? 'warn' : 'bad');
  }

  function renderGrid(gc) {
    gc = gc && typeof gc === 'object' ? gc : {};
    setText($('grid-max'), isNum(gc.max_power_kw) ? fmtNum(gc.max_power_kw, 1) + ' kW' : DASH);
    var pct = gc.utilisation_pct;
    var level = utilLevel(pct);
    var u = $('grid-utilisation');
    setText(u, isNum(pct) ? fmtNum(pct, 1) + ' %' : DASH);
    if (u) u.setAttribute('data-level', level);
    var fill = $('grid-util-fill');
    if (fill) {
      fill.setAttribute('data-level', level);
      // width via CSSOM (allowed by the CSP, unlike a style attribute in the markup)
      fill.style.width = (isNum(pct) ? Math.max(0, Math.min(100, pct)) : 0) + '%';
    }
  }

  // ---------------------------------------------------------------- feed-in limitation

  var FEEDIN_MODES = { off: t('Off'), fixed: t('Fixed'), dynamic: t('By time of day') };

  function renderFeedin(f) {
    f = f && typeof f === 'object' ? f : {};
    var mode = typeof f.mode === 'string' ? f.mode : '';
    var modeEl = $('feedin-mode');
    setText(modeEl, mode ? label(FEEDIN_MODES, mode) : DASH);
    if (modeEl) modeEl.setAttribute('data-mode', FEEDIN_MODES[mode] ? mode : 'unknown');
    var on = f.enabled === true && isNum(f.limit_pct);
    setText($('feedin-pct'), on ? fmtNum(f.limit_pct, 0) + ' %' : t('no limit'));
    var ref = '';
    if (on && isNum(f.reference_kw)) {
      ref = f.reference === 'pv_peak' ? t('The percentage is of the PV peak power ({kw} kWp).', { kw: fmtNum(f.reference_kw, 1) })
        : t('The percentage is of the grid connection\'s feed-in rating ({kw} kW).', { kw: fmtNum(f.reference_kw, 1) });
    }
    setText($('feedin-reference'), ref);
    setText($('feedin-export'), isNum(f.export_limit_w) ? fmtW(f.export_limit_w) : DASH);
  }

  // ---------------------------------------------------------------- battery

  function renderBattery(b) {
    b = b && typeof b === 'object' ? b : {};
    function show(id, key, digits, unit) {
      var m = meas(b[key]);
      var e = $(id);
      setText(e, fmtUnit(m.value, digits, unit));
      if (e) e.classList.toggle('is-stale', m.stale && m.value !== null);
    }
    show('batt-soc', 'soc_pct', 1, '%');
    show('batt-soh', 'soh_pct', 0, '%');
    show('batt-voltage', 'voltage_v', 1, 'V');
    show('batt-current', 'current_a', 1, 'A');
    show('batt-max-charge-a', 'max_charge_current_a', 0, 'A');
    show('batt-max-discharge-a', 'max_discharge_current_a', 0, 'A');
    show('batt-status-code', 'status_code', 0, '');
    // Where the battery's values come from (a device, the simulator, MQTT): the SoC's source stands for them.
    var soc = b.soc_pct && typeof b.soc_pct === 'object' ? b.soc_pct : {};
    setText($('batt-source'), typeof soc.source === 'string' && soc.source ? soc.source : DASH);
    show('batt-temperature', 'temperature_c', 1, '\u00b0C');
    show('batt-insulation', 'insulation_resistance_kohm', 0, 'k\u03a9');
    var mc = meas(b.max_charge_power_w), md = meas(b.max_discharge_power_w);
    setText($('batt-max-charge'), fmtW(mc.value));
    setText($('batt-max-discharge'), fmtW(md.value));
    var st = meas(b.status_text);
    setText($('batt-status'), typeof st.value === 'string' && st.value ? st.value : DASH);

    var raw = meas(b.alarms).value;
    var alarms = [];
    if (Array.isArray(raw)) {
      for (var i = 0; i < raw.length; i++) {
        var a = raw[i];
        if (typeof a === 'string' && a) alarms.push({ text: a, severity: 'warning' });
        else if (a && typeof a === 'object') {
          var name = typeof a.name === 'string' ? a.name : '';
          var text = typeof a.text === 'string' ? a.text : '';
          alarms.push({ text: name && text && name !== text ? name + ': ' + text : (name || text || t('alarm')),
                        severity: typeof a.severity === 'string' ? a.severity : 'warning' });
        }
      }
    }
    fillList($('batt-alarms'), alarms, t('none'), function (li, item) {
      li.className = 'mon-alarm';
      li.setAttribute('data-severity', item.severity);
      li.setAttribute('data-testid', 'batt-alarm');
    });
  }

  // ---------------------------------------------------------------- devices

  /** A duration in words: "12 s ago", "5 min ago", "3 h ago". */
  function ago(s) {
    if (!isNum(s) || s < 0) s = 0;
    if (s < 120) return t('{n} s ago', { n: fmtNum(s, 0) });
    if (s < 7200) return t('{n} min ago', { n: fmtNum(s / 60, 0) });
    return t('{n} h ago', { n: fmtNum(s / 3600, 1) });
  }

  function renderDevices(devs, now) {
    var body = $('devices-body');
    if (!body) return;
    var list = [];
    if (Array.isArray(devs)) list = devs.slice();
    else if (devs && typeof devs === 'object') for (var k in devs) if (Object.prototype.hasOwnProperty.call(devs, k)) {
      var d0 = devs[k];
      if (d0 && typeof d0 === 'object') list.push(d0.name ? d0 : Object.assign({ name: k }, d0));
    }
    list = list.filter(function (d) { return d && typeof d === 'object'; });
    list.sort(function (a, b) { return String(a.name).localeCompare(String(b.name)); });
    while (body.firstChild) body.removeChild(body.firstChild);
    var online = 0;
    if (!list.length) {
      var tr0 = el('tr');
      var td0 = el('td', 'muted', t('No devices.'));
      td0.colSpan = 7;
      tr0.appendChild(td0);
      body.appendChild(tr0);
    }
    for (var i = 0; i < list.length; i++) {
      var d = list[i];
      var state = typeof d.state === 'string' ? d.state : (d.online === true ? 'online' : (d.online === false ? 'offline' : ''));
      if (state === 'online') online++;
      var tr = el('tr');
      tr.setAttribute('data-testid', 'device-row');
      tr.setAttribute('data-device', String(d.name));
      tr.appendChild(el('td', 'dev-name', String(d.name || DASH)));
      tr.appendChild(el('td', null, typeof d.role === 'string' ? d.role : DASH));
      tr.appendChild(el('td', null, typeof d.profile === 'string' ? d.profile : DASH));
      var stTd = el('td');
      var pill = el('span', 'dev-state', state ? label(DEVICE_STATE_LABELS, state) : DASH);
      pill.setAttribute('data-state', state || 'unknown');
      pill.setAttribute('data-testid', 'device-state');
      stTd.appendChild(pill);
      tr.appendChild(stTd);
      // The last error with its age while it matters; once the device has answered since, it is cleared
      // (kept as the cell's tooltip for whoever wants the history).
      var hasError = typeof d.last_error === 'string' && d.last_error;
      var recovered = hasError && state === 'online' && isNum(d.last_ok_ts) && isNum(d.last_error_ts) &&
        d.last_ok_ts >= d.last_error_ts;
      var errText = !hasError || recovered ? DASH
        : d.last_error + (isNum(d.last_error_ts) && isNum(now) ? ' \u00b7 ' + ago(now - d.last_error_ts) : '');
      var errTd = el('td', 'dev-error', errText);
      errTd.setAttribute('translate', 'no');  // the device's or the link's own words
      errTd.setAttribute('data-testid', 'device-error');
      if (hasError && isNum(d.last_error_ts) && window.EMS && window.EMS.fmtTime) {
        errTd.title = (recovered ? t('recovered; last error {time}: {error}', { time: window.EMS.fmtTime(d.last_error_ts), error: d.last_error })
          : window.EMS.fmtTime(d.last_error_ts));
      }
      tr.appendChild(errTd);
      tr.appendChild(el('td', 'num', isNum(d.requests_per_cycle) ? fmtNum(d.requests_per_cycle, 0) : DASH));
      tr.appendChild(el('td', 'num', isNum(d.cycle_ms) ? fmtNum(d.cycle_ms, 1) + ' ms' : DASH));
      body.appendChild(tr);
    }
    setText($('dev-summary'), list.length ? t('{online} of {total} online', { online: fmtNum(online, 0), total: fmtNum(list.length, 0) }) : '');
  }

  // The JSON view: redrawn at most every 2 s and only while it is open (a big pre is costly to lay out).
  var jsonDue = 0;
  function renderJson(st) {
    var view = $('json-view');
    if (!view || !view.open || Date.now() < jsonDue) return;
    jsonDue = Date.now() + 2000;
    setText($('json-view-body'), JSON.stringify(st, null, 2));
  }

  function renderState(st) {
    if (!st || typeof st !== 'object') return;
    renderJson(st);
    var parts = [
      function () { renderPowerControl(st.power_control); },
      function () { renderGrid(st.grid_connection); },
      function () { renderFeedin(st.feedin_limitation); },
      function () { renderBattery(get(st, 'plant', 'battery')); },
      function () { renderDevices(st.devices, st.ts); }
    ];
    for (var i = 0; i < parts.length; i++) {
      try { parts[i](); } catch (e) { if (window.console) console.warn('monitoring update failed:', e); }
    }
  }

  // ---------------------------------------------------------------- live data

  // ---------------------------------------------------------------- simulator events

  function eventBody(btn) {
    var body = { type: btn.getAttribute('data-type') };
    if (body.type === 'dso_limit') {
      var input = $('sim-dso-limit-pct');
      var raw = input ? input.value.trim() : '';
      var pct = raw === '' ? NaN : Number(raw.replace(',', '.'));  // an empty field is no order, not 0 %
      if (!isNum(pct) || pct < 0 || pct > 100) return { error: t('DSO limit: enter a number from 0 to 100 %') };
      body.limit_pct = pct;
    }
    if (btn.hasAttribute('data-device')) body.device = btn.getAttribute('data-device');
    if (btn.hasAttribute('data-alarm')) body.alarm = btn.getAttribute('data-alarm');
    return body;
  }

  function showResult(text, ok) {
    var out = $('sim-result');
    if (!out) return;
    out.textContent = text;
    out.classList.toggle('is-error', !ok);
    out.classList.toggle('is-ok', !!ok);
  }

  function initSimulator() {
    var panel = $('sim-events');
    if (!panel || !window.EMS) return;
    var buttons = panel.querySelectorAll('button[data-type]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener('click', function (ev) {
        var btn = ev.currentTarget;
        var body = eventBody(btn);
        if (body.error) { showResult(body.error, false); return; }
        btn.disabled = true;
        showResult(t('sending {event}…', { event: body.type }), true);
        window.EMS.request('POST', '/api/simulator/events', body).then(function (res) {
          btn.disabled = false;
          if (res.status === 401) { window.EMS.toLogin(); return; }
          if (res.ok) {
            showResult(t('applied: {event}', { event: res.data.applied || body.type }), true);
          } else {
            var d = res.data || {};
            var msg = typeof d.error === 'string' && d.error ? d.error : 'HTTP ' + res.status;
            showResult(t('refused: {message}', { message: (d.field ? d.field + ': ' : '') + msg }), false);
          }
        });
      });
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    initSimulator();
    U.liveState(renderState);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
