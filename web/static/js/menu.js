/* Phoenyra EMS – the user menu (every signed-in page) and the small request helpers other pages share.
 *
 * Plain JS, no build step. The menu's content (name, role, rights, links) is rendered and escaped by the
 * server; this script opens and closes it (mouse and keyboard), loads notifications into it (GET
 * /api/notifications: the words in the page's language, the technical detail behind a disclosure; fetched
 * again when the live state's notifications.latest_id changes) and logs out (POST /logout with the X-CSRF-Token header, then /login).
 *
 * window.EMS, loaded first (in <head>, defer) so page scripts can use it:
 *   EMS.request(method, url, body) -> Promise<{status, ok, data}>; never rejects (network error: status 0).
 *     Sends JSON and the session's CSRF token from <meta name="csrf-token">.
 *   EMS.setCsrf(token)        after a password change the session (and its token) is new.
 *   EMS.showErrors(root, res) puts res.data.error next to [data-error-for=<res.data.field>] inside root.
 *   EMS.confirmButton(btn, armedLabel, action)  a second click within 5 s does `action`.
 *   EMS.clearErrors(root), EMS.fmtTime(epoch_s), EMS.toLogin(), EMS.closeMenu().
 * Data is only ever put into the page with textContent, never as HTML.
 */
(function () {
  'use strict';

  var POLL_MS = 30000;
  var NOTIF_LIMIT = 30;

  var U = window.EMSUtil, t = U.t;

  // What a notification's level and category (codes from the server) are called on the page.
  var LEVEL_LABELS = { info: t('info'), warning: t('warning'), error: t('error') };
  var CATEGORY_LABELS = {
    config: t('config'), control: t('control'), dso: t('dso'), feedin: t('feed-in'), grid: t('grid'),
    history: t('history'), modbus: t('Modbus devices'), mqtt: t('mqtt'), optimizer: t('optimizer'), safety: t('safety'),
    simulator: t('simulator'), supervisor: t('supervisor'), users: t('users')
  };

  function label(table, code) {
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }

  // ------------------------------------------------------------------ shared helpers

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') || '' : '';
  }

  function setCsrf(token) {
    if (typeof token !== 'string' || !token) return;
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) meta.setAttribute('content', token);
    var fields = document.querySelectorAll('input[name="csrf_token"]');
    for (var i = 0; i < fields.length; i++) fields[i].value = token;
  }

  function request(method, url, body) {
    var opts = {
      method: method,
      cache: 'no-cache',
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json' }
    };
    if (method !== 'GET' && method !== 'HEAD') {
      opts.headers['X-CSRF-Token'] = csrf();
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    return fetch(url, opts).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!data || typeof data !== 'object') data = r.ok ? {} : { error: 'HTTP ' + r.status };
        return { status: r.status, ok: r.ok, data: data };
      });
    }, function () {
      return { status: 0, ok: false, data: { error: t('no connection to the EMS; try again') } };
    });
  }

  function toLogin() {
    var here = location.pathname + location.search;
    location.assign('/login?next=' + encodeURIComponent(here));
  }

  function clearErrors(root) {
    if (!root) return;
    var els = root.querySelectorAll('[data-error-for]');
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = '';
      els[i].classList.remove('is-error', 'is-ok');
    }
    var bad = root.querySelectorAll('[aria-invalid="true"]');
    for (var j = 0; j < bad.length; j++) bad[j].removeAttribute('aria-invalid');
  }

  /** Show a failed response next to the field it names; anything else in the [data-error-for="_"] slot. */
  function showErrors(root, res) {
    if (!root) return;
    var data = (res && res.data) || {};
    var message = typeof data.error === 'string' && data.error ? data.error
      : t('failed (HTTP {status})', { status: res && res.status });
    if (res && res.status === 403 && data.field === 'csrf_token') message = t('your session changed: reload the page');
    if (res && res.status === 429) message = t('{message} (too many attempts)', { message: message });
    var field = typeof data.field === 'string' ? data.field : '';
    var slot = null;
    var slots = root.querySelectorAll('[data-error-for]');
    for (var i = 0; i < slots.length; i++) {
      if (slots[i].getAttribute('data-error-for') === field) { slot = slots[i]; break; }
    }
    if (slot) {
      var input = root.querySelector('[name="' + field.replace(/[^A-Za-z0-9_-]/g, '') + '"]');
      if (input) input.setAttribute('aria-invalid', 'true');
    } else {
      slot = root.querySelector('[data-error-for="_"]');
      if (field && field !== 'body') message = field + ': ' + message;
    }
    if (!slot) return;
    slot.textContent = message;
    slot.classList.add('is-error');
  }

  /** Epoch seconds as "today 14:05" or a date and time, in the page's locale; "—" for a non-number. */
  function fmtTime(ts) {
    if (typeof ts !== 'number' || !isFinite(ts)) return '\u2014';
    if (U.sameDay(ts, Date.now() / 1000)) {
      return t('today {time}', { time: U.fmtTime(ts, 'hm') });
    }
    return U.fmtTime(ts, 'datetime');
  }

  /** A destructive button that needs a second click within a few seconds (no blocking confirm() dialog). */
  function confirmButton(btn, armedLabel, action) {
    var label = btn.textContent;
    var timer = null;
    function disarm() {
      if (timer) clearTimeout(timer);
      timer = null;
      btn.classList.remove('is-armed');
      btn.textContent = label;
    }
    btn.addEventListener('click', function () {
      if (!btn.classList.contains('is-armed')) {
        btn.classList.add('is-armed');
        btn.textContent = armedLabel;
        timer = setTimeout(disarm, 5000);
        return;
      }
      disarm();
      action();
    });
    btn.addEventListener('blur', function () { if (btn.classList.contains('is-armed')) disarm(); });
  }

  /** GET a JSON answer for a page: its data, a login redirect on 401, or an Error with the server's message. */
  function getJson(url) {
    return request('GET', url).then(function (res) {
      if (res.status === 401) { toLogin(); throw new Error('signed out'); }
      if (!res.ok) throw new Error(res.data.error || ('HTTP ' + res.status));
      return res.data;
    });
  }

  window.EMS = {
    request: request, getJson: getJson, setCsrf: setCsrf, csrf: csrf, toLogin: toLogin, confirmButton: confirmButton,
    showErrors: showErrors, clearErrors: clearErrors, fmtTime: fmtTime,
    closeMenu: function () { close(false); }
  };

  // ------------------------------------------------------------------ menu

  var menu, button, panel, badge, list;

  function isOpen() { return !!panel && !panel.hidden; }

  function focusables() {
    if (!panel) return [];
    var all = panel.querySelectorAll('a[href], button:not([disabled]), summary, input:not([type=hidden])');
    var out = [];
    for (var i = 0; i < all.length; i++) if (all[i].offsetParent !== null) out.push(all[i]);
    return out;
  }

  function open(focusFirst) {
    if (!panel || isOpen()) return;
    panel.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    loadNotifications(true);
    if (focusFirst) {
      var f = focusables();
      if (f.length) f[0].focus();
    }
  }

  function close(returnFocus) {
    if (!panel || !isOpen()) return;
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (returnFocus) button.focus();
  }

  function onKey(ev) {
    if (!isOpen()) {
      if (ev.target === button && (ev.key === 'ArrowDown' || ev.key === 'Down')) {
        ev.preventDefault();
        open(true);
      }
      return;
    }
    if (ev.key === 'Escape' || ev.key === 'Esc') {
      ev.preventDefault();
      close(true);
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      var f = focusables();
      if (!f.length) return;
      var i = f.indexOf(document.activeElement);
      var next = ev.key === 'ArrowDown' ? (i + 1) % f.length : (i <= 0 ? f.length - 1 : i - 1);
      ev.preventDefault();
      f[next].focus();
    }
  }

  // ------------------------------------------------------------------ notifications

  var seenKey = null;
  var lastItems = [];

  function seenId() {
    try { return parseInt(localStorage.getItem(seenKey) || '0', 10) || 0; } catch (e) { return 0; }
  }

  function markSeen() {
    var max = 0;
    for (var i = 0; i < lastItems.length; i++) if (lastItems[i].id > max) max = lastItems[i].id;
    try { if (max) localStorage.setItem(seenKey, String(max)); } catch (e) { /* private mode: badge stays */ }
    updateBadge();
  }

  function isAlert(n) { return n.level === 'warning' || n.level === 'error'; }

  /** The badge counts warnings and errors that arrived since this user last opened the menu here. */
  function updateBadge() {
    if (!badge) return;
    var seen = seenId();
    var count = 0;
    var worst = '';
    for (var i = 0; i < lastItems.length; i++) {
      var n = lastItems[i];
      if (isAlert(n) && n.id > seen) {
        count++;
        if (n.level === 'error' || !worst) worst = n.level;
      }
    }
    badge.hidden = count === 0;
    badge.textContent = count > 99 ? '99+' : U.fmtNum(count, 0);
    badge.setAttribute('data-level', worst || 'none');
    badge.setAttribute('aria-label', count === 1 ? t('1 new warning or error')
      : t('{n} new warnings or errors', { n: U.fmtNum(count, 0) }));
  }

  function normalise(raw) {
    var items = [];
    if (!Array.isArray(raw)) return items;
    for (var i = 0; i < raw.length; i++) {
      var n = raw[i];
      if (!n || typeof n !== 'object') continue;
      items.push({
        id: typeof n.id === 'number' ? n.id : 0,
        ts: n.ts,
        level: n.level === 'warning' || n.level === 'error' ? n.level : 'info',
        category: typeof n.category === 'string' ? n.category : '',
        message: typeof n.message === 'string' ? n.message : '',
        detail: typeof n.detail === 'string' ? n.detail : ''
      });
    }
    items.sort(function (a, b) { return (b.ts || 0) - (a.ts || 0) || b.id - a.id; });
    return items;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderNotifications(message) {
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    if (message || !lastItems.length) {
      list.appendChild(el('li', 'notif-empty muted', message || t('No notifications.')));
      return;
    }
    var seen = seenId();
    for (var i = 0; i < lastItems.length; i++) {
      var n = lastItems[i];
      var li = el('li', 'notif');
      li.setAttribute('data-level', n.level);
      li.setAttribute('data-testid', 'notif');
      li.setAttribute('data-id', String(n.id));
      if (isAlert(n) && n.id > seen) li.classList.add('is-new');
      var head = el('div', 'notif-head');
      head.appendChild(el('span', 'notif-level', label(LEVEL_LABELS, n.level)));
      if (n.category) head.appendChild(el('span', 'notif-category', label(CATEGORY_LABELS, n.category)));
      var time = el('time', 'notif-time', fmtTime(n.ts));
      if (typeof n.ts === 'number' && isFinite(n.ts)) time.setAttribute('datetime', new Date(n.ts * 1000).toISOString());
      head.appendChild(time);
      li.appendChild(head);
      li.appendChild(el('p', 'notif-message', n.message));
      if (n.detail) {
        // The technical text (register, point, exception) one click away; <details> is keyboard accessible.
        var more = el('details', 'notif-detail');
        more.setAttribute('data-testid', 'notif-detail');
        more.appendChild(el('summary', '', t('Technical details')));
        var code = el('code', '', n.detail);
        code.setAttribute('translate', 'no');
        more.appendChild(code);
        li.appendChild(more);
      }
      list.appendChild(li);
    }
  }

  var loading = false;

  function loadNotifications(render) {
    if (loading) return;
    loading = true;
    request('GET', '/api/notifications?limit=' + NOTIF_LIMIT).then(function (res) {
      loading = false;
      if (res.status === 401) { toLogin(); return; }
      if (!res.ok) {
        if (render || isOpen()) renderNotifications(t('Notifications unavailable: {error}', { error: res.data.error || res.status }));
        return;
      }
      lastItems = normalise(res.data.notifications);
      if (render || isOpen()) renderNotifications();
      if (isOpen()) markSeen(); else updateBadge();
    });
  }

  // ------------------------------------------------------------------ logout

  function onLogout(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    var btn = form.querySelector('button[type=submit]');
    var errEl = document.getElementById('logout-error');
    if (btn) btn.disabled = true;
    request('POST', '/logout', {}).then(function (res) {
      if (res.ok || res.status === 401) {
        location.assign('/login');
        return;
      }
      if (btn) btn.disabled = false;
      if (errEl) {
        errEl.hidden = false;
        errEl.textContent = t('Logout failed: {error}', { error: res.data.error || 'HTTP ' + res.status });
      }
    });
  }

  // ------------------------------------------------------------------ start

  function start() {
    menu = document.getElementById('user-menu');
    button = document.getElementById('user-menu-button');
    panel = document.getElementById('user-menu-panel');
    badge = document.getElementById('notif-badge');
    list = document.getElementById('notif-list');
    if (!menu || !button || !panel) return;
    seenKey = 'ems.notifications.seen.' + (menu.getAttribute('data-user-id') || 'anon');

    button.addEventListener('click', function () {
      if (isOpen()) close(false); else open(false);
    });
    menu.addEventListener('keydown', onKey);
    document.addEventListener('click', function (ev) {
      if (isOpen() && !menu.contains(ev.target)) close(false);
    });
    menu.addEventListener('focusout', function (ev) {
      // Tabbing out of the menu closes it; clicks inside keep focus within and do not.
      if (isOpen() && ev.relatedTarget && !menu.contains(ev.relatedTarget)) close(false);
    });

    var logout = document.getElementById('logout-form');
    if (logout) logout.addEventListener('submit', onLogout);

    // A page the Back button brings back from the browser's memory may be from before a logout or from
    // another user's session: it asks who is signed in now and goes to the login or reloads if that changed.
    window.addEventListener('pageshow', function (ev) {
      if (!ev.persisted) return;  // a page loaded anew asks the server anyway (its fetches get 401 when signed out)
      request('GET', '/api/me').then(function (res) {
        if (res.status === 401) { toLogin(); return; }
        var user = res.ok ? U.get(res.data, 'user', 'id') : null;
        var token = res.ok ? res.data.csrf_token || '' : '';
        if (res.ok && (String(user) !== menu.getAttribute('data-user-id') || token !== csrf())) location.reload();
      });
    });

    loadNotifications(false);
    // Pages with a live stream say when a notification arrives (its latest id); the poll covers the others.
    var latestSeen = null;
    document.addEventListener('ems:live', function (ev) {
      var latest = U.get(ev.detail, 'notifications', 'latest_id');
      if (!U.isNum(latest)) return;
      if (latestSeen !== null && latest !== latestSeen) loadNotifications(isOpen());
      latestSeen = latest;
    });
    setInterval(function () {
      if (!document.hidden) loadNotifications(false);
    }, POLL_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
