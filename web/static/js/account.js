/* Phoenyra EMS – "My account" dialog, opened from the user menu: change one's own password, create and
 * revoke one's own API tokens (the plaintext of a new token is shown once, here, and never again).
 *
 * Plain JS, no build step; needs window.EMS from menu.js. API: POST /api/me/password,
 * GET/POST /api/me/tokens, DELETE /api/me/tokens/<id>. Data goes into the page with textContent only.
 */
(function () {
  'use strict';

  var U = window.EMSUtil, t = U.t;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function status(form, text, ok) {
    var slot = form.querySelector('[data-error-for="_"]');
    if (!slot) return;
    slot.textContent = text;
    slot.classList.toggle('is-ok', !!ok);
    slot.classList.toggle('is-error', !ok);
  }

  /** Client-side "is required" for empty fields, so the server is asked only for real decisions. */
  function requireFields(form, names) {
    var ok = true;
    for (var i = 0; i < names.length; i++) {
      var input = form.elements[names[i]];
      if (input && !input.value) {
        window.EMS.showErrors(form, { status: 400, data: { error: t('is required'), field: names[i] } });
        ok = false;
      }
    }
    return ok;
  }

  function handleAuthFailure(res) {
    if (res.status === 401) { window.EMS.toLogin(); return true; }
    return false;
  }

  // ------------------------------------------------------------------ tokens

  function renderTokens(tokens) {
    var list = $('own-token-list');
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    if (!Array.isArray(tokens) || !tokens.length) {
      list.appendChild(el('li', 'muted', t('You have no API tokens.')));
      return;
    }
    tokens.forEach(function (tok) {
      if (!tok || typeof tok !== 'object') return;
      var li = el('li', 'token-item');
      li.setAttribute('data-testid', 'own-token');
      var info = el('div', 'token-info');
      info.appendChild(el('span', 'token-name', typeof tok.name === 'string' ? tok.name : '?'));
      info.appendChild(el('span', 'muted', t('created {created} · last used {last_used}', {
        created: window.EMS.fmtTime(tok.created_ts),
        last_used: tok.last_used_ts ? window.EMS.fmtTime(tok.last_used_ts) : t('never')
      })));
      li.appendChild(info);
      var btn = el('button', 'btn btn-small btn-danger', t('Revoke'));
      btn.type = 'button';
      btn.setAttribute('data-requires', 'own_account');
      var err = el('span', 'field-error');
      err.setAttribute('role', 'alert');
      window.EMS.confirmButton(btn, t('Really revoke?'), function () {
        btn.disabled = true;
        window.EMS.request('DELETE', '/api/me/tokens/' + encodeURIComponent(String(tok.id)), {}).then(function (res) {
          if (handleAuthFailure(res)) return;
          if (!res.ok) {
            btn.disabled = false;
            err.textContent = res.data.error || t('revoking failed');
            return;
          }
          loadTokens();
        });
      });
      li.appendChild(btn);
      li.appendChild(err);
      list.appendChild(li);
    });
  }

  function loadTokens() {
    window.EMS.request('GET', '/api/me/tokens').then(function (res) {
      if (handleAuthFailure(res)) return;
      if (!res.ok) {
        var list = $('own-token-list');
        if (list) {
          while (list.firstChild) list.removeChild(list.firstChild);
          list.appendChild(el('li', 'field-error', t('Tokens unavailable: {error}', { error: res.data.error || res.status })));
        }
        return;
      }
      renderTokens(res.data.tokens);
    });
  }

  function onCreateToken(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    window.EMS.clearErrors(form);
    if (!requireFields(form, ['name'])) return;
    var btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    window.EMS.request('POST', '/api/me/tokens', { name: form.elements.name.value }).then(function (res) {
      btn.disabled = false;
      if (handleAuthFailure(res)) return;
      if (!res.ok) { window.EMS.showErrors(form, res); return; }
      form.reset();
      var box = $('own-new-token');
      var input = $('own-new-token-value');
      if (box && input) {
        input.value = typeof res.data.token === 'string' ? res.data.token : '';
        box.hidden = false;
        input.focus();
        input.select();
      }
      loadTokens();
    });
  }

  function onCopy() {
    var input = $('own-new-token-value');
    var btn = $('own-new-token-copy');
    if (!input || !btn) return;
    function done(ok) { btn.textContent = ok ? t('Copied') : t('Select and copy'); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(false); });
      return;
    }
    input.focus();
    input.select();
    var ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    done(ok);
  }

  // ------------------------------------------------------------------ password

  function onChangePassword(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    window.EMS.clearErrors(form);
    if (!requireFields(form, ['current_password', 'new_password'])) return;
    var btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    window.EMS.request('POST', '/api/me/password', {
      current_password: form.elements.current_password.value,
      new_password: form.elements.new_password.value
    }).then(function (res) {
      btn.disabled = false;
      if (handleAuthFailure(res)) return;
      if (!res.ok) { window.EMS.showErrors(form, res); return; }
      // The old session ended with the change; the response set a new cookie and this is its CSRF token.
      window.EMS.setCsrf(res.data.csrf_token);
      form.reset();
      status(form, t('Password changed. Your other sessions have been logged out.'), true);
    });
  }

  // ------------------------------------------------------------------ dialog

  function start() {
    var dialog = $('account-dialog');
    var opener = $('account-open');
    if (!dialog || !opener || !window.EMS) return;

    opener.addEventListener('click', function () {
      window.EMS.closeMenu();
      var box = $('own-new-token');
      if (box) box.hidden = true;
      if (typeof dialog.showModal === 'function') dialog.showModal(); else dialog.setAttribute('open', '');
      loadTokens();
    });
    var closer = $('account-close');
    if (closer) closer.addEventListener('click', function () { dialog.close(); });
    dialog.addEventListener('close', function () {
      var input = $('own-new-token-value');
      if (input) input.value = '';  // the plaintext token does not linger in the page
      var button = $('user-menu-button');
      if (button) button.focus();
    });

    var pw = $('own-password-form');
    if (pw) pw.addEventListener('submit', onChangePassword);
    var tf = $('own-token-form');
    if (tf) tf.addEventListener('submit', onCreateToken);
    var copy = $('own-new-token-copy');
    if (copy) copy.addEventListener('click', onCopy);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
