% rebase('base.tpl', live=False, **base_env)
<div class="page-head">
  <h1>{{_('Settings')}}</h1>
  <p class="muted" id="settings-role-note" data-testid="settings-role-note"></p>
</div>
<div class="settings-layout">
  <nav class="card settings-nav" aria-label="{{_('Sections')}}">
    <ul id="settings-nav" data-testid="settings-nav"></ul>
  </nav>
  <div class="settings-forms" id="settings-forms" data-testid="settings-forms">
    <p class="muted" id="settings-loading">{{_('Loading…')}}</p>
  </div>
</div>
<noscript><p class="form-alert">{{_('This page needs JavaScript.')}}</p></noscript>

% include('confirm_dialog.tpl')

<script src="{{static('js/settings.js')}}" defer></script>
