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

<dialog class="confirm-dialog" id="settings-confirm" data-testid="settings-confirm" aria-labelledby="settings-confirm-title">
  <h2 id="settings-confirm-title">{{_('Change safety-relevant settings?')}}</h2>
  <p>{{_('These settings decide how the EMS protects the grid connection and the battery. The change takes effect at once and is recorded in the audit log with your name.')}}</p>
  <ul class="confirm-changes" id="settings-confirm-list" data-testid="settings-confirm-list"></ul>
  <div class="form-actions">
    <button type="button" class="btn btn-danger" id="settings-confirm-ok" data-testid="settings-confirm-ok">{{_('Confirm and save')}}</button>
    <button type="button" class="btn" id="settings-confirm-cancel" data-testid="settings-confirm-cancel">{{_('Cancel')}}</button>
  </div>
</dialog>

<script src="{{static('js/settings.js')}}" defer></script>
