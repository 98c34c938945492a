<!DOCTYPE html>
<html lang="{{get('lang', 'en')}}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="csrf-token" content="{{get('csrf_token', '')}}">
  <meta name="site-timezone" content="{{get('site_timezone', '')}}">
  <title>{{get('title', 'Phoenyra EMS')}} · Phoenyra EMS</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{{static('css/app.css')}}">
<%
  # The user menu is rendered here, escaped by the template; menu.js only opens/closes it and loads notifications.
  me = get('me', None) or {}
  authenticated = bool(me.get('authenticated'))
  my_actions = me.get('actions') or []
  user = me.get('user') or {}
%>
% if authenticated:
  <script src="{{get('i18n_src', '/i18n/en.js')}}" defer></script>
  <script src="{{static('js/util.js')}}" defer></script>
  <script src="{{static('js/menu.js')}}" defer></script>
%   if 'own_account' in my_actions:
  <script src="{{static('js/account.js')}}" defer></script>
%   end
% end
</head>
<body>
  <header class="site-header">
    <div class="brand">
      <span class="brand-mark" aria-hidden="true"></span>
      <span class="brand-name">Phoenyra EMS</span>
% if get('site_name'):
      <span class="brand-site" data-testid="site-name" translate="no">{{get('site_name')}}</span>
% end
    </div>
    <nav class="tabs" aria-label="{{_('Main navigation')}}">
      <ul>
% for path, label in get('nav', []):
%   is_active = (path == get('active', ''))
        <li><a href="{{path}}" class="tab{{' is-active' if is_active else ''}}"{{!' aria-current="page"' if is_active else ''}}>{{label}}</a></li>
% end
      </ul>
    </nav>
    <div class="header-end">
% if get('live', False):
    <span id="conn-status" data-testid="conn-status" class="conn-status" data-state="connecting" role="status" aria-live="polite">{{_('connecting…')}}</span>
% end
% if authenticated:
<%
  from ems.users.permissions import ACTIONS as _ACTIONS
  role = me.get('role') or user.get('role') or ''
  username = user.get('username') or ''
  display_name = user.get('name') or username or _('Account')
  email = user.get('email') or ''
%>
    <div class="user-menu" id="user-menu" data-testid="user-menu" data-user-id="{{user.get('id', '')}}">
      <button type="button" id="user-menu-button" class="user-menu-button" data-testid="user-menu-button"
              aria-expanded="false" aria-controls="user-menu-panel">
        <span class="avatar" aria-hidden="true">{{display_name[:1].upper()}}</span>
        <span class="user-menu-label" translate="no">{{display_name}}</span>
        <span class="visually-hidden">{{_(': account menu')}}</span>
        <span class="notif-badge" id="notif-badge" data-testid="notif-badge" hidden></span>
        <span class="caret" aria-hidden="true"></span>
      </button>
      <div class="user-menu-panel" id="user-menu-panel" data-testid="user-menu-panel" hidden>
        <section class="menu-section menu-me" aria-label="{{_('Signed in as')}}">
          <p class="menu-me-name" data-testid="menu-name" translate="no">{{display_name}}</p>
          <p class="menu-me-sub">
            <span data-testid="menu-username" translate="no">{{username}}</span>
% if email:
            <span aria-hidden="true">·</span> <span data-testid="menu-email" translate="no">{{email}}</span>
% end
          </p>
          <p class="menu-me-role">{{_('Role:')}} <span class="role-pill" data-role="{{role}}" data-testid="menu-role">{{_(role)}}</span></p>
          <details class="menu-rights">
            <summary>{{_('What this role may do')}}</summary>
            <ul data-testid="menu-rights">
% for action, description in _ACTIONS.items():
%   if action in my_actions:
              <li data-action="{{action}}">{{_(description[:1].upper() + description[1:])}}</li>
%   end
% end
            </ul>
          </details>
        </section>

        <section class="menu-section menu-notifications" aria-labelledby="notif-title">
          <h2 id="notif-title" class="menu-heading">{{_('Notifications')}}</h2>
          <ol class="notif-list" id="notif-list" data-testid="notif-list" aria-live="polite">
            <li class="notif-empty muted">{{_('Loading…')}}</li>
          </ol>
        </section>

        <ul class="menu-links">
% if 'own_account' in my_actions:
          <li><button type="button" class="menu-link" id="account-open" data-testid="menu-account"
                      aria-haspopup="dialog">{{_('My account…')}}</button></li>
% end
          <li><a class="menu-link" href="/help" data-testid="menu-help">{{_('Help')}}</a></li>
% if 'manage_users' in my_actions:
          <li><a class="menu-link" href="/users" data-testid="menu-users">{{_('Users')}}</a></li>
% end
        </ul>
        % include('language.tpl', lang_place='menu')

        <form class="menu-logout" id="logout-form" method="post" action="/logout" data-testid="logout-form">
          <input type="hidden" name="csrf_token" value="{{get('csrf_token', '')}}">
          <button type="submit" class="btn btn-block" data-testid="logout">{{_('Log out')}}</button>
          <p class="field-error" id="logout-error" role="alert" hidden></p>
        </form>
      </div>
    </div>
% end
    </div>
  </header>
  <main id="content" class="content">
% if authenticated and user.get('one_time_credential') and get('active') != '/setup':
    <p class="banner banner-warning" role="alert" data-testid="one-time-banner">{{_('You are signed in with a one-time password.')}}
%   if 'configure_safety' in my_actions:
      <a href="/setup">{{_('Set your own and finish the setup')}}</a>
%   else:
      {{_('Set your own under My account in the user menu.')}}
%   end
    </p>
% end
{{!base}}
  </main>
% if authenticated and 'own_account' in my_actions:
  <dialog class="account-dialog" id="account-dialog" data-testid="account-dialog" aria-labelledby="account-title">
    <div class="dialog-head">
      <h2 id="account-title">{{_('My account')}}</h2>
      <button type="button" class="btn btn-quiet" id="account-close" data-testid="account-close">{{_('Close')}}</button>
    </div>

    <section class="dialog-section" aria-labelledby="pw-title">
      <h3 id="pw-title">{{_('Change my password')}}</h3>
      <p class="muted">{{_('At least 10 characters, not your username, not a common password. Your other sessions end.')}}</p>
      <form id="own-password-form" class="form-grid" data-requires="own_account" data-testid="own-password-form" novalidate>
        <input type="text" name="username" value="{{username}}" autocomplete="username" readonly hidden>
        <label for="own-current-password">{{_('Current password')}}</label>
        <div class="field">
          <input id="own-current-password" name="current_password" type="password" autocomplete="current-password" required>
          <span class="field-error" data-error-for="current_password" role="alert"></span>
        </div>
        <label for="own-new-password">{{_('New password')}}</label>
        <div class="field">
          <input id="own-new-password" name="new_password" type="password" autocomplete="new-password" minlength="10" required>
          <span class="field-error" data-error-for="new_password" role="alert"></span>
        </div>
        <div class="form-actions">
          <button type="submit" class="btn btn-primary">{{_('Change password')}}</button>
          <span class="form-status" data-error-for="_" role="status"></span>
        </div>
      </form>
    </section>

    <section class="dialog-section" aria-labelledby="tokens-title">
      <h3 id="tokens-title">{{_('My API tokens')}}</h3>
      <p class="muted">{{_('For machine clients: send')}} <code>Authorization: Bearer &lt;token&gt;</code>. {{_('A token acts with your role.')}}</p>
      <ul class="token-list" id="own-token-list" data-testid="own-token-list"></ul>
      <form id="own-token-form" class="inline-form" data-requires="own_account" data-testid="own-token-form" novalidate>
        <label for="own-token-name">{{_('Name')}}</label>
        <input id="own-token-name" name="name" maxlength="64" placeholder="{{_('e.g. Home Assistant')}}" required>
        <button type="submit" class="btn">{{_('Create token')}}</button>
        <span class="field-error" data-error-for="name" role="alert"></span>
        <span class="form-status" data-error-for="_" role="status"></span>
      </form>
      <div class="new-token" id="own-new-token" data-testid="own-new-token" hidden>
        <p><strong>{{_('Copy this token now — it is shown only once.')}}</strong></p>
        <div class="inline-form">
          <input id="own-new-token-value" readonly aria-label="{{_('New API token')}}" spellcheck="false">
          <button type="button" class="btn" id="own-new-token-copy">{{_('Copy')}}</button>
        </div>
      </div>
    </section>
  </dialog>
% end
  <footer class="site-footer">
    <span>Phoenyra EMS</span>
    <span class="version" data-testid="version">v{{get('version', '')}}</span>
% if not authenticated:
%   include('language.tpl', lang_place='footer')
% end
  </footer>
</body>
</html>
