/* Phoenyra EMS – settings page.
 * One form per config section, generated from GET /api/settings/form (labels, hints, units in the page's
 * language; kinds, bounds, choices and marks from the schema). Each form saves its whole section with
 * POST /api/config/<section>; the server validates it as a whole file, writes it atomically and applies it
 * live. Its error is shown at the field it names. Keys the caller may not change are shown disabled; a
 * change of an admin-only key asks for confirmation first (the server refuses it to non-admins and
 * records it in the audit log). Leaving with unsaved changes asks first.
 */
(function () {
  'use strict';

  var U = window.EMSUtil, $ = U.$, t = U.t;
  var EMS = window.EMS;

  var state = { sections: [], values: {}, may: {}, dirty: {} };
  var pendingSave = null;  // the save waiting for the confirmation dialog

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function clone(v) { return v === undefined ? undefined : JSON.parse(JSON.stringify(v)); }

  function fieldId(section, path) { return 'set-' + section + '-' + path.replace(/[^A-Za-z0-9_-]/g, '-'); }

  function mayChange(field) {
    if (!state.may.configure) return false;
    return !field.admin_only || !!state.may.configure_safety;
  }

  // ---------------------------------------------------------------- inputs

  /** An input for one plain value; `read()` gives the value to post (null for an empty nullable field). */
  function valueInput(field, value, id, path) {
    var input;
    if (field.kind === 'boolean') {
      input = el('input');
      input.type = 'checkbox';
      input.checked = value === true;
    } else if (field.kind === 'choice' || field.choices) {
      input = el('select');
      if (field.nullable) input.appendChild(option('', '\u2014'));
      (field.choices || []).forEach(function (c) {
        var labels = field.choice_labels || {};
        input.appendChild(option(String(c), labels[String(c)] || String(c)));
      });
      input.value = value === null || value === undefined ? '' : String(value);
    } else if (field.secret) {
      input = el('input');
      input.type = 'password';
      input.autocomplete = 'new-password';
      var isSet = value && typeof value === 'object' && value.set === true;
      input.placeholder = isSet ? t('set – leave empty to keep it') : t('not set');
      input.setAttribute('data-secret-set', isSet ? '1' : '0');
    } else if (field.kind === 'number' || field.kind === 'integer') {
      input = el('input');
      input.type = 'number';
      input.inputMode = field.kind === 'integer' ? 'numeric' : 'decimal';
      input.step = field.kind === 'integer' ? '1' : 'any';
      if (typeof field.min === 'number') input.min = String(field.min);
      if (typeof field.max === 'number') input.max = String(field.max);
      input.value = typeof value === 'number' ? String(value) : '';
    } else if (field.kind === 'list') {
      input = el('input');
      input.value = Array.isArray(value) ? value.join(', ') : '';
    } else {
      input = el('input');
      input.value = value === null || value === undefined ? '' : String(value);
      input.spellcheck = false;
    }
    input.id = id;
    input.name = path;
    input.setAttribute('data-path', path);
    input.setAttribute('data-testid', 'field-' + path);
    if (!mayChange(field)) input.disabled = true;
    return input;
  }

  function option(value, label) {
    var o = el('option', '', label);
    o.value = value;
    return o;
  }

  /** The value an input holds, in the form the API takes; `undefined` = leave the key as stored. */
  function readInput(field, input) {
    if (field.kind === 'boolean') return input.checked;
    if (field.secret) return input.value === '' ? undefined : { replace: input.value };
    var raw = input.value.trim();
    if (field.kind === 'list') {
      if (!raw) return [];
      return raw.split(/[\s,;]+/).filter(Boolean).map(function (s) {
        var n = Number(s);
        return field.item_kind === 'integer' || field.item_kind === 'number' ? (isFinite(n) && s !== '' ? n : s) : s;
      });
    }
    if (raw === '') return field.nullable ? null : (field.kind === 'string' || field.kind === 'choice' ? '' : null);
    if (field.choices) {  // a select holds text; the schema's choice may be a number (baud rate, stop bits)
      for (var i = 0; i < field.choices.length; i++) if (String(field.choices[i]) === raw) return field.choices[i];
    }
    if (field.kind === 'number' || field.kind === 'integer') {
      var num = Number(raw.replace(',', '.'));
      return isFinite(num) ? num : raw;  // a non-number goes to the server, which names the field
    }
    return raw;
  }

  // ---------------------------------------------------------------- tables (lists of rows)

  function tableEditor(section, field, rows, path) {
    var wrap = el('div', 'settings-table');
    wrap.setAttribute('data-path', path);
    wrap.setAttribute('data-testid', 'table-' + path);
    var scroll = el('div', 'table-scroll');
    var table = el('table', 'data-table');
    var head = el('tr');
    field.item_fields.forEach(function (f) {
      var th = el('th', '', f.label + (f.unit ? ' (' + f.unit + ')' : ''));
      th.scope = 'col';
      head.appendChild(th);
    });
    var actionsHead = el('th');
    actionsHead.appendChild(el('span', 'visually-hidden', t('Actions')));
    head.appendChild(actionsHead);
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el('tbody');
    table.appendChild(body);
    scroll.appendChild(table);
    wrap.appendChild(scroll);

    function addRow(item) {
      var index = body.children.length;
      var tr = el('tr');
      tr.setAttribute('data-testid', 'row');
      field.item_fields.forEach(function (f) {
        var td = el('td');
        var input = valueInput(f, item[f.key], fieldId(section, path + '-' + index + '-' + f.key), f.key);
        input.setAttribute('aria-label', f.label);
        input.setAttribute('data-item-key', f.key);
        td.appendChild(input);
        td.appendChild(errorSlot(path + '[' + index + '].' + f.key));
        tr.appendChild(td);
      });
      var td = el('td', 'actions-cell');
      var remove = el('button', 'btn btn-small', t('Remove'));
      remove.type = 'button';
      remove.setAttribute('data-testid', 'remove-row');
      remove.disabled = !mayChange(field);
      remove.addEventListener('click', function () { tr.remove(); markDirty(section); renumber(); });
      td.appendChild(remove);
      tr.appendChild(td);
      body.appendChild(tr);
    }

    function renumber() {  // error slots follow the row's position, as the server counts
      Array.prototype.forEach.call(body.children, function (tr, i) {
        tr.querySelectorAll('[data-error-for]').forEach(function (slot) {
          slot.setAttribute('data-error-for', slot.getAttribute('data-error-for').replace(/\[\d+\]/, '[' + i + ']'));
        });
      });
    }

    (Array.isArray(rows) ? rows : []).forEach(addRow);
    var add = el('button', 'btn btn-small', t('Add row'));
    add.type = 'button';
    add.setAttribute('data-testid', 'add-row-' + path);
    add.disabled = !mayChange(field);
    add.addEventListener('click', function () {
      var item = {};
      field.item_fields.forEach(function (f) { item[f.key] = clone(f.default); });
      addRow(item);
      markDirty(section);
    });
    wrap.appendChild(add);
    wrap.readRows = function () {
      return Array.prototype.map.call(body.children, function (tr) {
        var item = {};
        field.item_fields.forEach(function (f) {
          var input = tr.querySelector('[data-item-key="' + f.key + '"]');
          var v = readInput(f, input);
          if (v !== undefined) item[f.key] = v;
        });
        return item;
      });
    };
    return wrap;
  }

  function errorSlot(path) {
    var slot = el('span', 'field-error');
    slot.setAttribute('data-error-for', path);
    slot.setAttribute('role', 'alert');
    return slot;
  }

  // ---------------------------------------------------------------- forms

  /** A button; without `onClick` it submits its form. */
  function button(label, cls, testid, onClick) {
    var b = el('button', cls, label);
    b.type = onClick ? 'button' : 'submit';
    b.setAttribute('data-testid', testid);
    if (onClick) b.addEventListener('click', onClick);
    return b;
  }

  /** A section's actions: Save (for those who may configure), any `extras`, and the status its answer goes to. */
  function saveBar(name, extras) {
    var actions = el('div', 'form-actions');
    if (state.may.configure) actions.appendChild(button(t('Save'), 'btn btn-primary', 'save-' + name));
    extras.forEach(function (b) { actions.appendChild(b); });
    var status = el('span', 'form-status');
    status.setAttribute('data-error-for', '_');
    status.setAttribute('role', 'status');
    status.setAttribute('data-testid', 'status-' + name);
    actions.appendChild(status);
    return actions;
  }

  function buildForm(section) {
    var values = state.values[section.name] || {};
    var form = el('form', 'card page-section settings-form');
    form.id = 'section-' + section.name;
    form.noValidate = true;
    form.setAttribute('data-section', section.name);
    form.setAttribute('data-testid', 'settings-form-' + section.name);
    form.setAttribute('data-requires', 'configure');
    var h2 = el('h2', '', section.title);
    h2.id = 'section-title-' + section.name;
    form.setAttribute('aria-labelledby', h2.id);
    form.appendChild(h2);
    if (section.intro) form.appendChild(el('p', 'muted', section.intro));

    var grid = el('div', 'form-grid settings-grid');
    form.appendChild(grid);
    var readers = [];
    section.fields.forEach(function (field) {
      var path = field.key;
      var id = fieldId(section.name, path);
      var label = el('label', '', field.label);
      label.htmlFor = id;
      if (field.admin_only) {
        var lock = el('span', 'pill pill-admin', t('admin only'));
        lock.title = t('Only administrators change this; every change is in the audit log.');
        label.appendChild(document.createTextNode(' '));
        label.appendChild(lock);
      }
      var cell = el('div', 'field');
      if (field.kind === 'table') {
        label = el('span', 'settings-table-label', field.label);
        label.id = id + '-label';
        if (field.admin_only) label.appendChild(el('span', 'pill pill-admin', t('admin only')));
        var editor = tableEditor(section.name, field, values[field.key], path);
        editor.setAttribute('aria-labelledby', label.id);
        cell.appendChild(editor);
        readers.push({ field: field, read: function () { return editor.readRows(); } });
      } else {
        var input = valueInput(field, values[field.key], id, path);
        var line = el('div', 'field-line');
        line.appendChild(input);
        if (field.unit) line.appendChild(el('span', 'field-unit', field.unit));
        cell.appendChild(line);
        if (field.secret && values[field.key] && values[field.key].set) {
          var clear = el('label', 'field-inline');
          var box = el('input');
          box.type = 'checkbox';
          box.setAttribute('data-testid', 'clear-' + path);
          box.disabled = input.disabled;
          clear.appendChild(box);
          clear.appendChild(document.createTextNode(' ' + t('remove the stored value')));
          cell.appendChild(clear);
          readers.push({ field: field, read: function () { return box.checked ? { clear: true } : readInput(field, input); } });
        } else {
          readers.push({ field: field, read: function () { return readInput(field, input); } });
        }
      }
      if (field.hint) {
        var hint = el('span', 'field-hint', field.hint);
        cell.appendChild(hint);
      }
      cell.appendChild(errorSlot(path));
      grid.appendChild(label);
      grid.appendChild(cell);
    });

    var extras = [];
    if (section.test && state.may.configure) {
      var test = button(section.test.label, 'btn', 'test-' + section.name,
        function () { runTest(section, form, readers, test); });
      extras.push(test);
    }
    form.appendChild(saveBar(section.name, extras));

    form.addEventListener('input', function () { markDirty(section.name); });
    form.addEventListener('change', function () { markDirty(section.name); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submit(section, form, readers);
    });
    form.saveNow = function () { return submit(section, form, readers); };
    return form;
  }

  function markDirty(name) {
    state.dirty[name] = true;
    var link = document.querySelector('[data-nav-section="' + name + '"]');
    if (link) link.classList.add('is-dirty');
  }

  function clearDirty(name) {
    delete state.dirty[name];
    var link = document.querySelector('[data-nav-section="' + name + '"]');
    if (link) link.classList.remove('is-dirty');
  }

  /** The section to post: what is stored (keys the page does not show stay as they are), overlaid with the form. */
  function collect(section, readers) {
    var body = clone(state.values[section.name]) || {};
    readers.forEach(function (r) {
      var v = r.read();
      if (v === undefined) delete body[r.field.key]; else body[r.field.key] = v;
    });
    return body;
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

  function shown(v) {
    if (v === null || v === undefined || v === '') return '\u2014';
    if (typeof v === 'boolean') return v ? t('on') : t('off');
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function submit(section, form, readers) {
    clearErrors(form);
    var body = collect(section, readers);
    var stored = state.values[section.name] || {};
    var safety = section.fields.filter(function (f) {
      return f.admin_only && !f.secret && !same(body[f.key], stored[f.key]);
    });
    if (safety.length && state.may.configure_safety) {
      var list = $('settings-confirm-list');
      while (list.firstChild) list.removeChild(list.firstChild);
      safety.forEach(function (f) {
        var li = el('li');
        li.appendChild(el('strong', '', f.label + ': '));
        li.appendChild(document.createTextNode(shown(stored[f.key]) + ' \u2192 ' + shown(body[f.key])));
        if (f.hint) li.appendChild(el('span', 'field-hint', ' ' + f.hint));
        list.appendChild(li);
      });
      return confirmThen(function () { return post(section, form, body); });
    }
    return post(section, form, body);
  }

  /** Ask first; resolves with the save's outcome, or false when the admin cancels. */
  function confirmThen(save) {
    return new Promise(function (resolve) {
      pendingSave = function (confirmed) { if (confirmed) save().then(resolve); else resolve(false); };
      $('settings-confirm').showModal();
    });
  }

  function post(section, form, body) {
    var status = form.querySelector('[data-testid="status-' + section.name + '"]');
    status.textContent = t('Saving…');
    status.className = 'form-status';
    return EMS.request('POST', '/api/config/' + encodeURIComponent(section.name), body).then(function (res) {
      if (res.status === 401) { EMS.toLogin(); return false; }
      if (!res.ok) {
        status.textContent = '';
        showFieldError(section.name, form, res);
        return false;
      }
      state.values[section.name] = res.data[section.name];
      clearDirty(section.name);
      var fresh = section.kind === 'devices' ? buildDevices(section) : buildForm(section);
      form.replaceWith(fresh);
      var freshStatus = fresh.querySelector('[data-testid="status-' + section.name + '"]');
      var changed = Array.isArray(res.data.changed) ? res.data.changed.length : 0;
      freshStatus.textContent = changed ? t('Saved and applied ({n} changed).', { n: changed }) : t('Nothing changed.');
      freshStatus.className = 'form-status is-ok';
      if (form.onReplaced) form.onReplaced(fresh);
      return true;
    });
  }

  // What a failed connection test's `error_kind` means, in words; the exact error follows.
  var TEST_FAILURES = {
    dns: t('The name of the server was not found.'),
    refused: t('The connection was refused: nothing listens there.'),
    timeout: t('No answer in time.'),
    tls: t('The encrypted connection failed.'),
    auth: t('The login was refused.'),
    protocol: t('The server refused the connection.'),
    no_echo: t('Connected, but the test message did not come back.'),
    network: t('The network failed.')
  };

  /** The section's connection test with the values as the form holds them (saved or not). */
  function runTest(section, form, readers, button) {
    clearErrors(form);
    var status = form.querySelector('[data-testid="status-' + section.name + '"]');
    status.className = 'form-status';
    status.textContent = t('Testing…');
    button.disabled = true;
    EMS.request('POST', section.test.url, collect(section, readers)).then(function (res) {
      button.disabled = false;
      if (res.status === 401) { EMS.toLogin(); return; }
      if (!res.ok) { status.textContent = ''; showFieldError(section.name, form, res); return; }
      var r = res.data || {};
      status.setAttribute('data-test-ok', r.ok ? '1' : '0');
      if (r.ok) {
        status.className = 'form-status is-ok';
        status.textContent = t('Connected in {connect} ms; a test message went round in {round} ms.', {
          connect: U.fmtNum(r.connect_ms, 0), round: U.fmtNum(r.round_trip_ms, 0) });
      } else {
        status.className = 'form-status is-error';
        var words = Object.prototype.hasOwnProperty.call(TEST_FAILURES, r.error_kind) ? TEST_FAILURES[r.error_kind]
          : t('The test failed.');
        status.textContent = words + ' ' + (r.error || '');
      }
    });
  }

  /** Put the server's message next to the field it names ("bess.min_soc_pct", "dynamic_rules[0].end", …). */
  function showFieldError(name, form, res) {
    var data = res.data || {};
    var message = typeof data.error === 'string' && data.error ? data.error : t('failed (HTTP {status})', { status: res.status });
    var field = typeof data.field === 'string' ? data.field : '';
    var local = field.indexOf(name + '.') === 0 ? field.slice(name.length + 1) : field;
    var slot = null;
    var slots = form.querySelectorAll('[data-error-for]');
    for (var i = 0; i < slots.length; i++) {
      var key = slots[i].getAttribute('data-error-for');
      if (key === local || (key !== '_' && local.indexOf(key + '.') === 0)) { slot = slots[i]; break; }
    }
    if (!slot) {
      slot = form.querySelector('[data-error-for="_"]');
      if (field && field !== 'body' && field !== name && message.indexOf(field + ':') !== 0) message = field + ': ' + message;
    } else {
      var input = slot.parentNode.querySelector('[data-path]');
      if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    }
    slot.textContent = message;
    slot.classList.add('is-error');
  }

  function clearErrors(form) {
    form.querySelectorAll('[data-error-for]').forEach(function (slot) {
      slot.textContent = '';
      slot.classList.remove('is-error');
    });
    form.querySelectorAll('[aria-invalid]').forEach(function (i) { i.removeAttribute('aria-invalid'); });
  }

  // ---------------------------------------------------------------- Modbus devices (the wizard)

  var profileList = null;     // GET /api/modbus/profiles, once
  var profileDocs = {};       // key -> the profile document (registers), on first use
  var serialPorts = [];

  function loadProfiles() {
    if (profileList) return Promise.resolve(profileList);
    return EMS.request('GET', '/api/modbus/profiles').then(function (res) {
      profileList = res.ok && Array.isArray(res.data.profiles) ? res.data.profiles : [];
      return profileList;
    });
  }

  function profileDoc(key) {
    if (profileDocs[key]) return Promise.resolve(profileDocs[key]);
    return EMS.request('GET', '/api/modbus/profiles?profile=' + encodeURIComponent(key)).then(function (res) {
      if (!res.ok) return null;
      profileDocs[key] = res.data.profile;
      return profileDocs[key];
    });
  }

  function profileMeta(key) {
    for (var i = 0; i < (profileList || []).length; i++) if (profileList[i].key === key) return profileList[i];
    return null;
  }

  function fieldOf(section, key) {
    for (var i = 0; i < section.fields.length; i++) if (section.fields[i].key === key) return section.fields[i];
    return null;
  }

  function describeConnection(d) {
    return d.connection_type === 'rtu'
      ? (d.serial_port || '?') + ' \u00b7 ' + d.baudrate + ' ' + (d.parity || 'N') + (d.stopbits || 1) + ' \u00b7 #' + d.unit_id
      : (d.host || '?') + ':' + d.port + ' \u00b7 #' + d.unit_id;
  }

  function buildDevices(section) {
    var texts = section.texts || {};
    var devices = clone(state.values.modbus) || [];
    var card = el('form', 'card page-section settings-form settings-devices');
    card.id = 'section-modbus';
    card.noValidate = true;
    card.setAttribute('data-section', 'modbus');
    card.setAttribute('data-testid', 'settings-form-modbus');
    card.setAttribute('data-requires', 'configure');
    var h2 = el('h2', '', section.title);
    h2.id = 'section-title-modbus';
    card.setAttribute('aria-labelledby', h2.id);
    card.appendChild(h2);
    card.appendChild(el('p', 'muted', section.intro));

    var listWrap = el('div', 'table-scroll');
    var table = el('table', 'data-table devices-list');
    table.setAttribute('data-testid', 'devices-list');
    var head = el('tr');
    [fieldOf(section, 'name').label, fieldOf(section, 'role').label, fieldOf(section, 'profile').label,
      fieldOf(section, 'connection_type').label, fieldOf(section, 'enabled').label, t('Actions')].forEach(function (h) {
      var th = el('th', '', h);
      th.scope = 'col';
      head.appendChild(th);
    });
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el('tbody');
    table.appendChild(body);
    listWrap.appendChild(table);
    card.appendChild(listWrap);

    var editor = el('div', 'device-editor');
    editor.hidden = true;
    editor.setAttribute('data-testid', 'device-editor');
    var editing = null;  // index in devices, or -1 for a new one
    var editorReaders = {};

    function renderList() {
      while (body.firstChild) body.removeChild(body.firstChild);
      devices.forEach(function (d, i) {
        var tr = el('tr');
        tr.setAttribute('data-testid', 'device-row');
        tr.setAttribute('data-device', String(d.name));
        var roleLabels = fieldOf(section, 'role').choice_labels || {};
        var meta = profileMeta(d.profile);
        [String(d.name), roleLabels[d.role] || String(d.role),
          meta ? meta.vendor + ' ' + meta.model : String(d.profile), describeConnection(d),
          d.enabled ? t('on') : t('off')].forEach(function (text, col) {
          var td = el('td', '', text);
          if (col === 0 || col === 3) td.setAttribute('translate', 'no');
          tr.appendChild(td);
        });
        var td = el('td', 'actions-cell');
        var edit = el('button', 'btn btn-small', texts.edit);
        edit.type = 'button';
        edit.setAttribute('data-testid', 'edit-device');
        edit.addEventListener('click', function () { openEditor(i); });
        td.appendChild(edit);
        var remove = el('button', 'btn btn-small', texts.remove);
        remove.type = 'button';
        remove.setAttribute('data-testid', 'remove-device');
        remove.disabled = !state.may.configure_safety;
        remove.addEventListener('click', function () { devices.splice(i, 1); markDirty('modbus'); renderList(); });
        td.appendChild(remove);
        tr.appendChild(td);
        body.appendChild(tr);
      });
    }

    function openEditor(index) {
      editing = index;
      var d = index >= 0 ? devices[index] : {
        name: '', role: 'meter', profile: (profileList && profileList[0] && profileList[0].key) || '', enabled: true,
        connection_type: 'tcp', host: '', port: 502, serial_port: null, baudrate: 9600, parity: 'N', stopbits: 1,
        unit_id: 1, poll_interval_s: 2.0, timeout_s: 3.0
      };
      while (editor.firstChild) editor.removeChild(editor.firstChild);
      editorReaders = {};
      editor.appendChild(el('h3', '', index >= 0 ? String(d.name) : texts.add));
      var grid = el('div', 'form-grid settings-grid');
      editor.appendChild(grid);
      var rows = {};
      section.fields.forEach(function (field) {
        if (field.key === 'register_overrides') return;  // edited in the register table below
        var id = fieldId('modbus', 'dev-' + field.key);
        var label = el('label', '', field.label);
        label.htmlFor = id;
        // A new device is all the admin's to set; an existing one's role, profile and use are admin-only.
        var f = field;
        if (index < 0 && !state.may.configure_safety) f = Object.assign({}, field, { admin_only: true });
        if (f.admin_only) label.appendChild(el('span', 'pill pill-admin', t('admin only')));
        var input;
        if (field.key === 'profile') {
          input = el('select');
          (profileList || []).forEach(function (p) {
            input.appendChild(option(p.key, p.vendor + ' ' + p.model + (p.verified ? ' \u2713' : '')));
          });
          input.value = d.profile;
          input.id = id;
          input.name = 'profile';
          input.setAttribute('data-path', 'profile');
          input.setAttribute('data-testid', 'field-profile');
          if (!mayChange(f)) input.disabled = true;
        } else {
          input = valueInput(f, d[field.key], id, field.key);
        }
        if (field.key === 'serial_port') {
          var list = el('datalist');
          list.id = id + '-ports';
          serialPorts.forEach(function (p) { list.appendChild(option(p.by_id || p.path, p.path)); });
          input.setAttribute('list', list.id);
          grid.appendChild(list);
        }
        var cell = el('div', 'field');
        var line = el('div', 'field-line');
        line.appendChild(input);
        if (field.unit) line.appendChild(el('span', 'field-unit', field.unit));
        cell.appendChild(line);
        if (field.hint) cell.appendChild(el('span', 'field-hint', field.hint));
        cell.appendChild(errorSlot(field.key));
        grid.appendChild(label);
        grid.appendChild(cell);
        rows[field.key] = [label, cell];
        editorReaders[field.key] = function () { return field.key === 'profile' ? input.value : readInput(field, input); };
      });
      var registersDoc = null;
      editorReaders.register_overrides = function () { return readOverrides(registers, registersDoc); };
      var info = el('div', 'profile-info');
      info.setAttribute('data-testid', 'profile-info');
      editor.appendChild(info);
      var registers = el('div', 'table-scroll register-table');
      editor.appendChild(registers);

      function showKind() {
        var rtu = editorReaders.connection_type() === 'rtu';
        ['host', 'port'].forEach(function (k) { rows[k].forEach(function (e) { e.hidden = rtu; }); });
        ['serial_port', 'baudrate', 'parity', 'stopbits'].forEach(function (k) { rows[k].forEach(function (e) { e.hidden = !rtu; }); });
      }
      function showProfile(prefill) {
        var key = editorReaders.profile();
        var meta = profileMeta(key);
        while (info.firstChild) info.removeChild(info.firstChild);
        if (meta) {
          info.appendChild(el('strong', '', meta.vendor + ' ' + meta.model + ' '));
          info.appendChild(el('span', 'pill ' + (meta.verified ? 'pill-ok' : 'pill-admin'), meta.verified ? texts.verified : texts.unverified));
          if (meta.description) info.appendChild(el('p', 'muted', meta.description));
          if (meta.notes) info.appendChild(el('p', 'field-hint', meta.notes));
          if (prefill && meta.defaults) {
            ['port', 'unit_id', 'baudrate', 'parity', 'stopbits', 'poll_interval_s', 'timeout_s'].forEach(function (k) {
              var inp = editor.querySelector('[data-path="' + k + '"]');
              if (inp && meta.defaults[k] !== undefined && !inp.disabled) inp.value = String(meta.defaults[k]);
            });
          }
        }
        var overrides = key === d.profile ? (d.register_overrides || {}) : {};
        var editable = state.may.configure_safety && mayChange(fieldOf(section, 'register_overrides'));
        profileDoc(key).then(function (doc) {
          registersDoc = doc;
          renderRegisters(registers, doc, section.columns || {}, texts, overrides, editable);
        });
      }
      editor.querySelector('[data-path="connection_type"]').addEventListener('change', showKind);
      editor.querySelector('[data-path="profile"]').addEventListener('change', function () { showProfile(index < 0); });
      showKind();
      showProfile(index < 0 && !d.name);

      var actions = el('div', 'form-actions');
      var result = el('div', 'test-result');
      result.setAttribute('data-testid', 'device-test-result');
      result.setAttribute('role', 'status');
      if (state.may.commission) {
        var test = el('button', 'btn', texts.test);
        test.type = 'button';
        test.setAttribute('data-testid', 'test-device');
        test.addEventListener('click', function () { testDevice(readEditor(), test, result, registers); });
        actions.appendChild(test);
      }
      var done = el('button', 'btn btn-primary', texts.done);
      done.type = 'button';
      done.setAttribute('data-testid', 'device-done');
      done.disabled = !state.may.configure;
      done.addEventListener('click', function () {
        var dev = readEditor();
        if (editing >= 0) devices[editing] = dev; else devices.push(dev);
        editor.hidden = true;
        markDirty('modbus');
        renderList();
      });
      actions.appendChild(done);
      editor.appendChild(actions);
      editor.appendChild(result);
      editor.hidden = false;
      editor.scrollIntoView({ block: 'nearest' });
    }

    function readEditor() {
      var d = editing >= 0 ? clone(devices[editing]) : {};
      Object.keys(editorReaders).forEach(function (k) {
        var v = editorReaders[k]();
        if (v !== undefined) d[k] = v;
      });
      return d;
    }

    var add = el('button', 'btn', texts.add);
    add.type = 'button';
    add.setAttribute('data-testid', 'add-device');
    add.disabled = !state.may.configure_safety;
    add.addEventListener('click', function () { openEditor(-1); });
    card.appendChild(add);
    card.appendChild(editor);

    card.appendChild(saveBar('modbus', []));
    card.saveNow = function () {
      if (!editor.hidden) editor.querySelector('[data-testid=device-done]').click();
      var stored = state.values.modbus || [];
      var adminKeys = function (d) { return [d.name, d.role, d.profile, d.enabled, overridesOf(d)]; };
      var changesRoles = JSON.stringify(devices.map(adminKeys)) !== JSON.stringify(stored.map(adminKeys));
      var go = function () { return post(section, card, devices); };
      if (changesRoles && state.may.configure_safety) {
        var list = $('settings-confirm-list');
        while (list.firstChild) list.removeChild(list.firstChild);
        devices.forEach(function (d) { list.appendChild(el('li', '', d.name + ': ' + d.role + ', ' + d.profile + (d.enabled ? '' : ' (' + t('off') + ')'))); });
        return confirmThen(go);
      }
      if (!state.dirty.modbus) return Promise.resolve(true);
      return go();
    };
    card.addEventListener('submit', function (ev) {
      ev.preventDefault();
      card.saveNow();
    });
    renderList();
    return card;
  }

  // What a site may correct in a profile register (`RegisterOverride` in the schema), and how to read it back.
  var OVERRIDABLE = { address: 'int', function: 'int', type: 'text', word_order: 'text', scale: 'num', offset: 'num',
    unit: 'text' };

  /** The overrides the register table holds: per register, the keys whose value differs from the profile. */
  function readOverrides(wrap, doc) {
    var out = {};
    if (!doc || !doc.registers) return out;
    wrap.querySelectorAll('tr[data-register]').forEach(function (tr) {
      var name = tr.getAttribute('data-register');
      var reg = doc.registers[name] || {};
      tr.querySelectorAll('input[data-override]').forEach(function (input) {
        var key = input.getAttribute('data-override');
        var raw = input.value.trim();
        var value = OVERRIDABLE[key] === 'text' ? raw : (raw === '' ? null : Number(raw.replace(',', '.')));
        if (OVERRIDABLE[key] !== 'text' && value !== null && !isFinite(value)) value = raw;  // the server names it
        var profileValue = reg[key] === undefined ? (key === 'scale' ? 1 : (key === 'offset' ? 0 : '')) : reg[key];
        if (value !== null && value !== '' && String(value) !== String(profileValue)) {
          (out[name] = out[name] || {})[key] = value;
        }
      });
    });
    return out;
  }

  /** A device's overrides without the keys left unset (the stored form lists every key, null when unset). */
  function overridesOf(d) {
    var out = {};
    Object.keys(d.register_overrides || {}).sort().forEach(function (name) {
      var o = d.register_overrides[name] || {};
      Object.keys(o).sort().forEach(function (k) { if (o[k] !== null && o[k] !== undefined) (out[name] = out[name] || {})[k] = o[k]; });
    });
    return out;
  }

  function renderRegisters(wrap, doc, columns, texts, overrides, editable) {
    while (wrap.firstChild) wrap.removeChild(wrap.firstChild);
    if (!doc || !doc.registers) return;
    overrides = overrides || {};
    wrap.appendChild(el('h4', '', texts.registers));
    var table = el('table', 'data-table');
    table.setAttribute('data-testid', 'register-table');
    var keys = ['name', 'address', 'function', 'type', 'word_order', 'scale', 'offset', 'unit', 'category', 'value'];
    var head = el('tr');
    keys.forEach(function (k) { var th = el('th', '', columns[k] || k); th.scope = 'col'; head.appendChild(th); });
    if (editable) {
      var actionsTh = el('th');
      actionsTh.appendChild(el('span', 'visually-hidden', t('Actions')));
      head.appendChild(actionsTh);
    }
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el('tbody');
    Object.keys(doc.registers).forEach(function (name) {
      var r = doc.registers[name];
      var tr = el('tr');
      tr.setAttribute('data-register', name);
      tr.setAttribute('translate', 'no');
      var own = overrides[name] || {};
      keys.forEach(function (k) {
        var v = k === 'name' ? name : (k === 'value' ? '' : r[k]);
        var shownValue = own[k] !== undefined && own[k] !== null ? own[k] : v;
        var td;
        if (editable && OVERRIDABLE[k]) {
          td = el('td');
          var input = el('input');
          input.value = shownValue === undefined || shownValue === null ? '' : String(shownValue);
          input.setAttribute('data-override', k);
          input.setAttribute('aria-label', name + ': ' + (columns[k] || k));
          input.size = k === 'type' || k === 'word_order' ? 6 : 5;
          input.addEventListener('input', function () { markRow(tr, doc.registers[name]); markDirty('modbus'); });
          td.appendChild(input);
        } else {
          td = el('td', k === 'value' ? 'register-value' : '', shownValue === undefined || shownValue === null ? '' : String(shownValue));
        }
        if (k === 'value') td.setAttribute('data-testid', 'register-value');
        tr.appendChild(td);
      });
      if (editable) {
        var resetCell = el('td');
        var reset = el('button', 'btn btn-small', texts.reset || 'Reset');
        reset.type = 'button';
        reset.setAttribute('data-testid', 'reset-register');
        reset.addEventListener('click', function () {
          tr.querySelectorAll('input[data-override]').forEach(function (input) {
            var k = input.getAttribute('data-override');
            var pv = r[k];
            input.value = pv === undefined || pv === null ? '' : String(pv);
          });
          markRow(tr, r);
          markDirty('modbus');
        });
        resetCell.appendChild(reset);
        tr.appendChild(resetCell);
      }
      markRow(tr, r);
      body.appendChild(tr);
    });
    table.appendChild(body);
    wrap.appendChild(table);
  }

  /** A row whose values differ from the profile's is marked as this site's. */
  function markRow(tr, reg) {
    var differs = false;
    tr.querySelectorAll('input[data-override]').forEach(function (input) {
      var k = input.getAttribute('data-override');
      var pv = reg[k] === undefined || reg[k] === null ? '' : String(reg[k]);
      if (input.value.trim() !== '' && input.value.trim() !== pv) differs = true;
    });
    tr.classList.toggle('is-overridden', differs);
  }

  function testDevice(device, button, result, registers) {
    button.disabled = true;
    while (result.firstChild) result.removeChild(result.firstChild);
    result.appendChild(el('p', 'muted', t('Testing…')));
    EMS.request('POST', '/api/modbus/test', device).then(function (res) {
      button.disabled = false;
      while (result.firstChild) result.removeChild(result.firstChild);
      if (res.status === 401) { EMS.toLogin(); return; }
      if (!res.ok) {
        var p = el('p', 'form-alert', (res.data.field ? res.data.field + ': ' : '') + (res.data.error || res.status));
        result.appendChild(p);
        result.setAttribute('data-test-ok', '0');
        return;
      }
      var r = res.data;
      result.setAttribute('data-test-ok', r.ok ? '1' : '0');
      var summary = r.ok
        ? t('The device answered: {n} requests, {ms} ms on average.', { n: r.requests, ms: U.fmtNum((r.latency_ms || {}).avg, 1) })
        : t('The device did not answer every read.');
      result.appendChild(el('p', r.ok ? 'form-status is-ok' : 'form-status is-error', summary));
      if (r.status_text) result.appendChild(el('p', '', t('Status: {text}', { text: r.status_text })));
      if (Array.isArray(r.sunspec_models) && r.sunspec_models.length) {
        result.appendChild(el('p', '', t('SunSpec models found: {models}', { models: r.sunspec_models.join(', ') })));
      }
      (r.errors || []).forEach(function (e) {
        var text = (e.read ? e.read + ': ' : '') + e.error;
        var p = el('p', 'form-alert', text);
        p.setAttribute('data-testid', 'device-test-error');
        p.setAttribute('translate', 'no');
        result.appendChild(p);
      });
      var values = r.values || {};
      registers.querySelectorAll('tr[data-register]').forEach(function (tr) {
        var v = values[tr.getAttribute('data-register')];
        var cell = tr.querySelector('.register-value');
        if (!cell) return;
        cell.textContent = v ? (typeof v.value === 'number' ? U.fmtNum(v.value, Math.abs(v.value) < 100 ? 2 : 0) : String(v.value)) +
          (v.unit ? ' ' + v.unit : '') : '';
        tr.classList.toggle('has-value', !!v);
      });
    });
  }

  // ---------------------------------------------------------------- page

  function render(data) {
    state.sections = Array.isArray(data.sections) ? data.sections : [];
    state.values = data.values || {};
    state.may = data.may || {};
    var nav = $('settings-nav');
    var forms = $('settings-forms');
    while (forms.firstChild) forms.removeChild(forms.firstChild);
    state.sections.forEach(function (section) {
      var li = el('li');
      var a = el('a', '', section.title);
      a.href = '#section-' + section.name;
      a.setAttribute('data-nav-section', section.name);
      li.appendChild(a);
      nav.appendChild(li);
      forms.appendChild(section.kind === 'devices' ? buildDevices(section) : buildForm(section));
    });
    var note = $('settings-role-note');
    note.textContent = !state.may.configure ? t('You can see the settings; changing them needs the operator role.')
      : (!state.may.configure_safety ? t('Settings marked "admin only" are safety-relevant: an administrator changes them.')
        : t('Each section is saved on its own, checked as a whole and applied at once.'));
  }

  function answerConfirm(confirmed) {
    var dialog = $('settings-confirm');
    if (dialog.open) dialog.close();
    var go = pendingSave;
    pendingSave = null;
    if (go) go(confirmed);
  }

  // ---------------------------------------------------------------- first-run setup (/setup)

  var SETUP_KEY = 'ems_setup_step';

  function setupMode(data) {
    var steps = Array.isArray(data.setup) ? data.setup : [];
    var list = $('setup-steps');
    var holder = $('setup-step');
    var nav = $('setup-nav');
    var sections = {};
    (data.sections || []).forEach(function (s) { sections[s.name] = s; });
    var current = Math.min(Number(window.localStorage.getItem(SETUP_KEY) || 0) || 0, steps.length);
    var shownForms = [];

    function renderList() {
      while (list.firstChild) list.removeChild(list.firstChild);
      steps.forEach(function (step, i) {
        var li = el('li', i === current ? 'is-current' : (i < current ? 'is-done' : ''), step.title);
        if (i === current) li.setAttribute('aria-current', 'step');
        list.appendChild(li);
      });
      var end = el('li', current >= steps.length ? 'is-current' : '', t('Done'));
      list.appendChild(end);
    }

    function show(i) {
      current = i;
      window.localStorage.setItem(SETUP_KEY, String(i));
      renderList();
      while (holder.firstChild) holder.removeChild(holder.firstChild);
      shownForms = [];
      $('setup-back').disabled = i === 0;
      if (i >= steps.length) {
        var card = el('section', 'card page-section');
        card.setAttribute('data-testid', 'setup-done');
        card.appendChild(el('h2', '', t('The site is set up')));
        card.appendChild(el('p', '', t('Everything can be changed later in Settings. The dashboard shows what the EMS does now.')));
        var go = el('a', 'btn btn-primary', t('To the dashboard'));
        go.href = '/';
        card.appendChild(go);
        holder.appendChild(card);
        $('setup-next').hidden = true;
        $('setup-skip').hidden = true;
        window.localStorage.removeItem(SETUP_KEY);
        return;
      }
      $('setup-next').hidden = false;
      $('setup-skip').hidden = false;
      var step = steps[i];
      holder.appendChild(el('h2', 'setup-title', step.title));
      holder.appendChild(el('p', 'muted', step.intro));
      step.parts.forEach(function (part) {
        var section = sections[part.section];
        if (!section) return;
        var f;
        if (section.kind === 'devices') {
          f = buildDevices(section);
        } else {
          var only = Object.assign({}, section, {
            fields: section.fields.filter(function (fd) { return part.keys.indexOf(fd.key) >= 0; }), intro: ''
          });
          f = buildForm(only);
        }
        holder.appendChild(f);
        shownForms.push(f);
        f.onReplaced = function (fresh) {
          shownForms[shownForms.indexOf(f)] = fresh;
          fresh.onReplaced = f.onReplaced;
        };
      });
    }

    $('setup-back').addEventListener('click', function () { if (current > 0) show(current - 1); });
    $('setup-next').addEventListener('click', function () {
      var status = $('setup-status');
      status.textContent = '';
      var forms = shownForms.slice();
      var chain = Promise.resolve(true);
      forms.forEach(function (f) {
        chain = chain.then(function (ok) {
          if (!ok) return false;
          return f.getAttribute('data-section') !== 'modbus' && !state.dirty[f.getAttribute('data-section')]
            ? true : f.saveNow();
        });
      });
      chain.then(function (ok) {
        if (ok) show(current + 1);
        else status.textContent = t('Please correct the marked field, or skip the setup for now.');
      });
    });

    var passwordCard = $('setup-password');
    var passwordForm = $('setup-password-form');
    if (passwordCard && !passwordCard.hidden) {
      passwordForm.addEventListener('submit', function (ev) {
        ev.preventDefault();
        EMS.clearErrors(passwordForm);
        EMS.request('POST', '/api/me/password', {
          current_password: passwordForm.elements.current_password.value,
          new_password: passwordForm.elements.new_password.value
        }).then(function (res) {
          if (res.status === 401) { EMS.toLogin(); return; }
          if (!res.ok) { EMS.showErrors(passwordForm, res); return; }
          if (res.data && res.data.csrf_token) EMS.setCsrf(res.data.csrf_token);
          passwordCard.hidden = true;
          nav.hidden = false;
          show(current);
        });
      });
      renderList();
    } else {
      nav.hidden = false;
      show(current);
    }
  }

  function init() {
    if (!$('settings-forms') && !$('setup-steps')) return;
    Promise.all([EMS.request('GET', '/api/settings/form'), loadProfiles()]).then(function (all) {
      var res = all[0];
      var mayTest = res.ok && res.data.may && res.data.may.commission;
      // The gateway's serial ports are for those who may test devices (the list names the hardware).
      return (mayTest ? EMS.request('GET', '/api/modbus/serial_ports') : Promise.resolve({ ok: false }))
        .then(function (ports) { return [res, ports]; });
    }).then(function (both) {
      var res = both[0];
      serialPorts = both[1].ok && Array.isArray(both[1].data.serial_ports) ? both[1].data.serial_ports : [];
      if (res.status === 401) { EMS.toLogin(); return; }
      var loading = $('settings-loading');
      if (!res.ok) {
        if (loading) loading.textContent = t('Settings unavailable: {error}', { error: res.data.error || res.status });
        return;
      }
      state.sections = Array.isArray(res.data.sections) ? res.data.sections : [];
      state.values = res.data.values || {};
      state.may = res.data.may || {};
      if ($('setup-steps')) { setupMode(res.data); return; }
      render(res.data);
      if (location.hash && document.getElementById(location.hash.slice(1))) {
        document.getElementById(location.hash.slice(1)).scrollIntoView();
      }
    });
    $('settings-confirm-ok').addEventListener('click', function () { answerConfirm(true); });
    $('settings-confirm-cancel').addEventListener('click', function () { answerConfirm(false); });
    $('settings-confirm').addEventListener('cancel', function () { answerConfirm(false); });  // Escape
    window.addEventListener('beforeunload', function (ev) {
      if (Object.keys(state.dirty).length) { ev.preventDefault(); ev.returnValue = ''; }
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
