/* Phoenyra EMS – user administration (/users, admins only).
 *
 * Plain JS, no build step; needs window.EMS from menu.js (request with CSRF header, field errors).
 * API: GET/POST /api/users, PUT/DELETE /api/users/<id>, POST /api/users/<id>/password,
 * DELETE /api/tokens/<id>; GET/POST /api/config/web (self-registration), GET /api/audit (the audit log).
 * After every change the lists are reloaded from the server, so the page never
 * shows a state the server refused. Names and e-mails are shown with textContent: HTML in them stays text.
 */
(function () {
  'use strict';

  var U = window.EMSUtil, t = U.t, fmtNum = U.fmtNum;

  var ROLES = ['admin', 'operator', 'viewer'];
  // What a role is called on the page (the value sent to the server stays the role's name).
  var ROLE_LABELS = { admin: t('admin'), operator: t('operator'), viewer: t('viewer') };

  function roleLabel(role) {
    return Object.prototype.hasOwnProperty.call(ROLE_LABELS, role) ? ROLE_LABELS[role] : role;
  }

  var app, usersBody, tokensBody, statusEl, countEl;
  var meId = null;
  var usernames = {};  // user id -> username, for the token table

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function button(text, cls, testid) {
    var b = el('button', 'btn btn-small' + (cls ? ' ' + cls : ''), text);
    b.type = 'button';
    b.setAttribute('data-requires', 'manage_users');
    if (testid) b.setAttribute('data-testid', testid);
    return b;
  }

  function errorSlot(field) {
    var s = el('span', 'field-error');
    s.setAttribute('data-error-for', field);
    s.setAttribute('role', 'alert');
    return s;
  }

  function str(v) { return typeof v === 'string' ? v : ''; }

  function setStatus(text, ok) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.classList.toggle('is-ok', !!ok);
    statusEl.classList.toggle('is-error', !ok && !!text);
  }

  function clearChildren(node) { while (node && node.firstChild) node.removeChild(node.firstChild); }

  function authFailed(res) {
    if (res.status === 401) { window.EMS.toLogin(); return true; }
    return false;
  }

  /** Send a change; on success reload and say what happened, on failure show it next to its field in `root`. */
  function change(method, url, body, root, done) {
    window.EMS.clearErrors(root);
    return window.EMS.request(method, url, body).then(function (res) {
      if (authFailed(res)) return res;
      if (!res.ok) {
        window.EMS.showErrors(root, res);
        setStatus('', false);
      } else {
        if (done) setStatus(done(res.data), true);
        load();
      }
      return res;
    });
  }

  // ------------------------------------------------------------------ user rows

  function userRow(u) {
    var self = u.id === meId;
    var tr = el('tr', u.disabled ? 'is-disabled' : '');
    tr.setAttribute('data-testid', 'user-row');
    tr.setAttribute('data-username', str(u.username));
    tr.setAttribute('data-user-id', String(u.id));

    var who = el('td', 'user-cell');
    var name = el('span', 'user-name', str(u.name) || str(u.username));
    name.setAttribute('translate', 'no');  // a name is data, in no language
    who.appendChild(name);
    var sub = el('span', 'user-login muted', str(u.username));
    sub.setAttribute('translate', 'no');
    who.appendChild(sub);
    if (self) who.appendChild(el('span', 'pill pill-you', t('you')));
    tr.appendChild(who);

    tr.appendChild(el('td', 'user-email', str(u.email) || '\u2014'));

    var roleCell = el('td');
    var select = el('select', 'role-select');
    select.setAttribute('aria-label', t('Role of {username}', { username: str(u.username) }));
    select.setAttribute('data-testid', 'role-select');
    select.setAttribute('data-requires', 'manage_users');
    select.name = 'role';
    ROLES.forEach(function (r) {
      var o = el('option', '', roleLabel(r));
      o.value = r;
      if (r === u.role) o.selected = true;
      select.appendChild(o);
    });
    if (ROLES.indexOf(u.role) < 0) {  // a role from a hand-edited file: show it, let the admin fix it
      var odd = el('option', '', t('{role} (unknown)', { role: str(u.role) }));
      odd.value = str(u.role);
      odd.selected = true;
      select.appendChild(odd);
    }
    if (self) {
      select.disabled = true;
      select.title = t('Another admin must change your own role');
    }
    select.addEventListener('change', function () {
      var wanted = select.value;
      select.disabled = true;
      change('PUT', '/api/users/' + u.id, { role: wanted }, tr, function () {
        return t('Role of {username} is now {role}.', { username: str(u.username), role: roleLabel(wanted) });
      }).then(function (res) {
        if (!res.ok) { select.value = u.role; select.disabled = false; }
      });
    });
    roleCell.appendChild(select);
    roleCell.appendChild(errorSlot('role'));
    tr.appendChild(roleCell);

    var state = el('td');
    var pill = el('span', 'pill ' + (u.disabled ? 'pill-off' : 'pill-on'), u.disabled ? t('disabled') : t('active'));
    pill.setAttribute('data-testid', 'user-state');
    state.appendChild(pill);
    tr.appendChild(state);

    tr.appendChild(el('td', 'muted', u.last_login_ts ? window.EMS.fmtTime(u.last_login_ts) : t('never')));

    var actionsCell = el('td', 'actions-cell');
    var actions = el('div', 'row-actions');
    actionsCell.appendChild(actions);
    var pwRow = passwordRow(u);
    if (!self) {
      var toggle = button(u.disabled ? t('Enable') : t('Disable'), '', 'toggle-disabled');
      toggle.addEventListener('click', function () {
        toggle.disabled = true;
        change('PUT', '/api/users/' + u.id, { disabled: !u.disabled }, tr, function () {
          return u.disabled ? t('{username} can log in again.', { username: str(u.username) })
            : t('{username} is disabled and logged out.', { username: str(u.username) });
        }).then(function (res) { if (!res.ok) toggle.disabled = false; });
      });
      actions.appendChild(toggle);
    }
    var pwBtn = button(t('Set password'), '', 'set-password');
    pwBtn.setAttribute('aria-expanded', 'false');
    pwBtn.addEventListener('click', function () {
      var show = pwRow.hidden;
      pwRow.hidden = !show;
      pwBtn.setAttribute('aria-expanded', show ? 'true' : 'false');
      if (show) pwRow.querySelector('input').focus();
    });
    actions.appendChild(pwBtn);
    if (!self) {
      var del = button(t('Delete'), 'btn-danger', 'delete-user');
      window.EMS.confirmButton(del, t('Really delete?'), function () {
        del.disabled = true;
        change('DELETE', '/api/users/' + u.id, {}, tr, function () {
          return t('Deleted {username} and revoked their tokens.', { username: str(u.username) });
        }).then(function (res) { if (!res.ok) del.disabled = false; });
      });
      actions.appendChild(del);
    }
    actions.appendChild(errorSlot('disabled'));
    actions.appendChild(errorSlot('id'));
    actions.appendChild(errorSlot('_'));
    tr.appendChild(actionsCell);
    return [tr, pwRow];
  }

  function passwordRow(u) {
    var tr = el('tr', 'password-row');
    tr.hidden = true;
    var td = el('td');
    td.colSpan = 6;
    var form = el('form', 'inline-form');
    form.noValidate = true;
    form.setAttribute('data-requires', 'manage_users');
    form.setAttribute('data-testid', 'password-form');
    form.setAttribute('data-username', str(u.username));
    var id = 'pw-' + u.id;
    var label = el('label', '', t('New password for {username}', { username: str(u.username) }));
    label.htmlFor = id;
    var input = el('input');
    input.type = 'password';
    input.id = id;
    input.name = 'password';
    input.autocomplete = 'new-password';
    input.minLength = 10;
    var save = el('button', 'btn btn-small btn-primary', t('Save password'));
    save.type = 'submit';
    var cancel = button(t('Cancel'), 'btn-quiet');
    cancel.addEventListener('click', function () { tr.hidden = true; form.reset(); window.EMS.clearErrors(form); });
    var who = el('input');  // lets password managers file the new password under the right account
    who.type = 'text';
    who.name = 'username';
    who.autocomplete = 'username';
    who.value = str(u.username);
    who.readOnly = true;
    who.hidden = true;
    form.appendChild(who);
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(save);
    form.appendChild(cancel);
    form.appendChild(errorSlot('password'));
    form.appendChild(errorSlot('_'));
    form.appendChild(el('span', 'field-hint', t('Their sessions end; tell them the new password.')));
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      window.EMS.clearErrors(form);
      if (!input.value) {
        window.EMS.showErrors(form, { status: 400, data: { error: t('is required'), field: 'password' } });
        return;
      }
      save.disabled = true;
      change('POST', '/api/users/' + u.id + '/password', { password: input.value }, form, function () {
        return t('New password set for {username}; their sessions have ended.', { username: str(u.username) });
      }).then(function () { save.disabled = false; });
    });
    td.appendChild(form);
    tr.appendChild(td);
    return tr;
  }

  function renderUsers(users) {
    clearChildren(usersBody);
    usernames = {};
    users.forEach(function (u) { if (u && typeof u.id === 'number') usernames[u.id] = str(u.username); });
    if (!users.length) {
      var tr = el('tr');
      var td = el('td', 'muted', t('No users.'));
      td.colSpan = 6;
      tr.appendChild(td);
      usersBody.appendChild(tr);
    }
    users.forEach(function (u) {
      if (!u || typeof u.id !== 'number') return;
      userRow(u).forEach(function (row) { usersBody.appendChild(row); });
    });
    if (countEl) countEl.textContent = users.length === 1 ? t('1 account') : t('{n} accounts', { n: fmtNum(users.length, 0) });
  }

  // ------------------------------------------------------------------ tokens

  function renderTokens(tokens) {
    clearChildren(tokensBody);
    if (!tokens.length) {
      var tr = el('tr');
      var td = el('td', 'muted', t('No API tokens.'));
      td.colSpan = 5;
      tr.appendChild(td);
      tokensBody.appendChild(tr);
      return;
    }
    tokens.forEach(function (tok) {
      if (!tok || typeof tok !== 'object') return;
      var row = el('tr');
      row.setAttribute('data-testid', 'token-row');
      row.appendChild(el('td', '', str(tok.name)));
      var owner = el('td', '', usernames[tok.user_id] || t('user {id}', { id: tok.user_id }));
      owner.setAttribute('translate', 'no');
      row.appendChild(owner);
      row.appendChild(el('td', 'muted', window.EMS.fmtTime(tok.created_ts)));
      row.appendChild(el('td', 'muted', tok.last_used_ts ? window.EMS.fmtTime(tok.last_used_ts) : t('never')));
      var cell = el('td', 'actions-cell');
      var actions = el('div', 'row-actions');
      cell.appendChild(actions);
      var revoke = button(t('Revoke'), 'btn-danger', 'revoke-token');
      window.EMS.confirmButton(revoke, t('Really revoke?'), function () {
        revoke.disabled = true;
        change('DELETE', '/api/tokens/' + encodeURIComponent(String(tok.id)), {}, row, function () {
          return t('Token “{name}” revoked.', { name: str(tok.name) });
        }).then(function (res) { if (!res.ok) revoke.disabled = false; });
      });
      actions.appendChild(revoke);
      actions.appendChild(errorSlot('id'));
      actions.appendChild(errorSlot('_'));
      row.appendChild(cell);
      tokensBody.appendChild(row);
    });
  }

  // ------------------------------------------------------------------ load + create

  function load() {
    return window.EMS.request('GET', '/api/users').then(function (res) {
      if (authFailed(res)) return;
      if (!res.ok) {
        setStatus(t('Could not load the users: {error}', { error: res.data.error || 'HTTP ' + res.status }), false);
        return;
      }
      renderUsers(Array.isArray(res.data.users) ? res.data.users : []);
      renderTokens(Array.isArray(res.data.tokens) ? res.data.tokens : []);
    });
  }

  function onCreate(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    window.EMS.clearErrors(form);
    var f = form.elements;
    var missing = false;
    ['username', 'password'].forEach(function (name) {
      if (!f[name].value) {
        window.EMS.showErrors(form, { status: 400, data: { error: t('is required'), field: name } });
        missing = true;
      }
    });
    if (missing) return;
    var body = { username: f.username.value, name: f.name.value, email: f.email.value, role: f.role.value,
                 password: f.password.value };
    var btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    change('POST', '/api/users', body, form, function (data) {
      var u = (data && data.user) || {};
      return t('Created {username} ({role}).', { username: str(u.username), role: roleLabel(str(u.role)) });
    }).then(function (res) {
      btn.disabled = false;
      if (res.ok) form.reset();
    });
  }

  // ------------------------------------------------------------------ registration + audit log

  var webSection = null;

  function loadRegistration() {
    var box = $('allow-registration');
    if (!box) return;
    window.EMS.request('GET', '/api/config/web').then(function (res) {
      if (authFailed(res) || !res.ok || !res.data || !res.data.web) return;
      webSection = res.data.web;
      box.checked = !!webSection.allow_registration;
    });
  }

  function onRegistration(ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    if (!webSection) return;
    var wanted = !!$('allow-registration').checked;
    var body = {};
    Object.keys(webSection).forEach(function (k) { body[k] = webSection[k]; });
    body.allow_registration = wanted;
    var btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    window.EMS.clearErrors(form);
    window.EMS.request('POST', '/api/config/web', body).then(function (res) {
      btn.disabled = false;
      if (authFailed(res)) return;
      if (!res.ok) { window.EMS.showErrors(form, res); loadRegistration(); return; }
      webSection = res.data.web;
      var slot = form.querySelector('[data-error-for="_"]');
      if (slot) {
        slot.textContent = wanted ? t('Self-registration is on.') : t('Self-registration is off.');
        slot.classList.add('is-ok');
      }
      loadAudit();
    });
  }

  function cellText(v) {
    if (v === null || v === undefined) return '\u2014';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  function loadAudit() {
    var body = $('audit-body');
    if (!body) return;
    window.EMS.request('GET', '/api/audit?limit=100').then(function (res) {
      if (authFailed(res)) return;
      clearChildren(body);
      var chain = $('audit-chain');
      if (!res.ok) {
        var tr = el('tr');
        var td = el('td', 'muted', t('Could not load the audit log: {error}',
          { error: (res.data && res.data.error) || 'HTTP ' + res.status }));
        td.colSpan = 6;
        tr.appendChild(td);
        body.appendChild(tr);
        return;
      }
      if (chain) {
        var ok = res.data.chain && res.data.chain.ok;
        chain.textContent = ok ? t('chain intact') : t('chain broken: an entry was changed or removed');
        chain.classList.toggle('is-error', !ok);
      }
      var entries = Array.isArray(res.data.entries) ? res.data.entries : [];
      if (!entries.length) {
        var empty = el('tr');
        var cell = el('td', 'muted', t('No changes recorded yet.'));
        cell.colSpan = 6;
        empty.appendChild(cell);
        body.appendChild(empty);
      }
      entries.forEach(function (e) {
        var row = el('tr');
        row.setAttribute('data-testid', 'audit-row');
        row.setAttribute('translate', 'no');  // a record: who, what and the values as they were written
        row.appendChild(el('td', 'muted', window.EMS.fmtTime(e.ts)));
        row.appendChild(el('td', '', str(e.user) + (e.role ? ' (' + str(e.role) + ')' : '')));
        row.appendChild(el('td', 'muted', str(e.remote_addr) || '\u2014'));
        row.appendChild(el('td', '', str(e.field)));
        row.appendChild(el('td', '', cellText(e.old)));
        row.appendChild(el('td', '', cellText(e.new)));
        body.appendChild(row);
      });
    });
  }

  function start() {
    var regForm = $('registration-form');
    if (regForm) regForm.addEventListener('submit', onRegistration);
    loadRegistration();
    loadAudit();
    app = $('users-app');
    usersBody = $('users-body');
    tokensBody = $('tokens-body');
    statusEl = $('users-status');
    countEl = $('users-count');
    if (!app || !usersBody || !tokensBody || !window.EMS) return;
    var id = parseInt(app.getAttribute('data-me-id') || '', 10);
    meId = isFinite(id) ? id : null;
    var form = $('create-user-form');
    if (form) form.addEventListener('submit', onCreate);
    load();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
