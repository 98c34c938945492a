% rebase('base.tpl', live=False, **base_env)
% my_id = ((get('me', None) or {}).get('user') or {}).get('id', '')
<div class="page-head">
  <h1>{{_('Users')}}</h1>
  <p class="muted">{{_('Admins manage everything, operators run and configure the plant, viewers only read.')}}</p>
</div>

<section class="card page-section users-card" id="users-app" data-me-id="{{my_id}}" aria-labelledby="accounts-title">
  <div class="card-head">
    <h2 id="accounts-title">{{_('Accounts')}}</h2>
    <span class="muted" id="users-count" data-testid="users-count"></span>
  </div>
  <p class="form-status" id="users-status" data-testid="users-status" role="status"></p>
  <div class="table-wrap">
    <table class="data-table users-table" data-testid="users-table">
      <thead>
        <tr>
          <th scope="col">{{_('User')}}</th>
          <th scope="col">{{_('E-mail')}}</th>
          <th scope="col">{{_('Role')}}</th>
          <th scope="col">{{_('Status')}}</th>
          <th scope="col">{{_('Last login')}}</th>
          <th scope="col"><span class="visually-hidden">{{_('Actions')}}</span></th>
        </tr>
      </thead>
      <tbody id="users-body">
        <tr><td colspan="6" class="muted">{{_('Loading…')}}</td></tr>
      </tbody>
    </table>
  </div>
  <noscript><p class="form-alert">{{_('This page needs JavaScript.')}}</p></noscript>
</section>

<section class="card page-section" aria-labelledby="create-title">
  <h2 id="create-title">{{_('Create a user')}}</h2>
  <form id="create-user-form" class="form-grid create-user" data-requires="manage_users" data-testid="create-user-form" novalidate>
    <label for="new-username">{{_('Username')}}</label>
    <div class="field">
      <input id="new-username" name="username" autocomplete="off" autocapitalize="none" spellcheck="false" required
             maxlength="32" data-testid="new-username">
      <span class="field-hint">{{_('3–32 characters: a–z, 0–9, “.”, “_” or “-”')}}</span>
      <span class="field-error" data-error-for="username" role="alert"></span>
    </div>
    <label for="new-name">{{_('Name')}}</label>
    <div class="field">
      <input id="new-name" name="name" autocomplete="off" maxlength="100" data-testid="new-name">
      <span class="field-error" data-error-for="name" role="alert"></span>
    </div>
    <label for="new-email">{{_('E-mail')}}</label>
    <div class="field">
      <input id="new-email" name="email" type="email" autocomplete="off" maxlength="254" data-testid="new-email">
      <span class="field-error" data-error-for="email" role="alert"></span>
    </div>
    <label for="new-role">{{_('Role')}}</label>
    <div class="field">
      <select id="new-role" name="role" data-testid="new-role">
        <option value="viewer" selected>{{_('viewer — reads only')}}</option>
        <option value="operator">{{_('operator — operates and configures the plant')}}</option>
        <option value="admin">{{_('admin — everything, including users')}}</option>
      </select>
      <span class="field-error" data-error-for="role" role="alert"></span>
    </div>
    <label for="new-password">{{_('Password')}}</label>
    <div class="field">
      <input id="new-password" name="password" type="password" autocomplete="new-password" required minlength="10"
             data-testid="new-password">
      <span class="field-hint">{{_('at least 10 characters, not the username, not a common password')}}</span>
      <span class="field-error" data-error-for="password" role="alert"></span>
    </div>
    <div class="form-actions">
      <button type="submit" class="btn btn-primary" data-testid="create-user">{{_('Create user')}}</button>
      <span class="form-status" data-error-for="_" role="status"></span>
    </div>
  </form>
</section>

<section class="card page-section" aria-labelledby="tokens-admin-title">
  <div class="card-head">
    <h2 id="tokens-admin-title">{{_('API tokens')}}</h2>
    <span class="muted">{{_('all users · revoking stops a machine client at once')}}</span>
  </div>
  <div class="table-wrap">
    <table class="data-table" data-testid="tokens-table">
      <thead>
        <tr>
          <th scope="col">{{_('Name')}}</th>
          <th scope="col">{{_('User')}}</th>
          <th scope="col">{{_('Created')}}</th>
          <th scope="col">{{_('Last used')}}</th>
          <th scope="col"><span class="visually-hidden">{{_('Actions')}}</span></th>
        </tr>
      </thead>
      <tbody id="tokens-body">
        <tr><td colspan="5" class="muted">{{_('Loading…')}}</td></tr>
      </tbody>
    </table>
  </div>
</section>

<section class="card page-section" aria-labelledby="registration-title">
  <h2 id="registration-title">{{_('Self-registration')}}</h2>
  <form id="registration-form" class="inline-form" data-requires="configure_safety" data-testid="registration-form"
        novalidate>
    <label for="allow-registration">
      <input type="checkbox" id="allow-registration" name="allow_registration" data-testid="allow-registration">
      {{_('Anyone who can reach the gateway may create a viewer account')}}
    </label>
    <button type="submit" class="btn btn-small" data-testid="save-registration">{{_('Save')}}</button>
    <span class="field-error" data-error-for="web.allow_registration" role="alert"></span>
    <span class="form-status" data-error-for="_" role="status"></span>
  </form>
  <p class="field-hint">{{_('Off by default: you create the accounts. When on, sign-ups are limited per address and overall.')}}</p>
</section>

<section class="card page-section" aria-labelledby="audit-title">
  <div class="card-head">
    <h2 id="audit-title">{{_('Audit log')}}</h2>
    <span class="muted" id="audit-chain" data-testid="audit-chain"></span>
  </div>
  <p class="muted">{{_('Every change of a setting — who, when, from where, old → new — for the grid operator:')}}
    <a href="/api/audit/export?format=csv" download data-testid="audit-csv">{{_('download CSV')}}</a> ·
    <a href="/api/audit/export?format=jsonl" download data-testid="audit-jsonl">{{_('JSON lines')}}</a></p>
  <div class="table-wrap">
    <table class="data-table" data-testid="audit-table">
      <thead>
        <tr>
          <th scope="col">{{_('When')}}</th>
          <th scope="col">{{_('Who')}}</th>
          <th scope="col">{{_('From')}}</th>
          <th scope="col">{{_('Setting')}}</th>
          <th scope="col">{{_('Old')}}</th>
          <th scope="col">{{_('New')}}</th>
        </tr>
      </thead>
      <tbody id="audit-body">
        <tr><td colspan="6" class="muted">{{_('Loading…')}}</td></tr>
      </tbody>
    </table>
  </div>
</section>

<script src="{{static('js/users.js')}}" defer></script>
