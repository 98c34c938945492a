% rebase('base.tpl', live=False, **base_env)
<div class="page-head">
  <h1>{{_('First-run setup')}}</h1>
  <p class="muted">{{_('A few steps to commission this site. Each step is saved when you go on; you can stop at any time and come back, and change everything later in Settings.')}}</p>
</div>
<ol class="setup-steps" id="setup-steps" data-testid="setup-steps" data-one-time="{{'1' if get('one_time') else '0'}}"></ol>

<section class="card page-section setup-password" id="setup-password" data-testid="setup-password"{{!'' if get('one_time') else ' hidden'}}>
  <h2>{{_('Your own password')}}</h2>
  <p class="muted">{{_('You signed in with a one-time password. Choose your own now: at least 10 characters, not your username, not a common password.')}}</p>
  <form id="setup-password-form" class="form-grid" data-requires="own_account" data-testid="setup-password-form" novalidate>
    <input type="text" name="username" value="{{((me or {}).get('user') or {}).get('username', '')}}" autocomplete="username" readonly hidden>
    <label for="setup-current-password">{{_('One-time password')}}</label>
    <div class="field">
      <input id="setup-current-password" name="current_password" type="password" autocomplete="current-password" required data-testid="setup-current-password">
      <span class="field-error" data-error-for="current_password" role="alert"></span>
    </div>
    <label for="setup-new-password">{{_('New password')}}</label>
    <div class="field">
      <input id="setup-new-password" name="new_password" type="password" autocomplete="new-password" minlength="10" required data-testid="setup-new-password">
      <span class="field-error" data-error-for="new_password" role="alert"></span>
    </div>
    <div class="form-actions">
      <button type="submit" class="btn btn-primary" data-testid="setup-password-save">{{_('Set password and continue')}}</button>
      <span class="form-status" data-error-for="_" role="status"></span>
    </div>
  </form>
</section>

<div id="setup-step" data-testid="setup-step"></div>
<div class="form-actions setup-nav" id="setup-nav" data-testid="setup-nav" hidden>
  <button type="button" class="btn" id="setup-back" data-testid="setup-back">{{_('Back')}}</button>
  <button type="button" class="btn btn-primary" id="setup-next" data-testid="setup-next">{{_('Save and continue')}}</button>
  <a class="btn btn-quiet" href="/" id="setup-skip" data-testid="setup-skip">{{_('Skip setup for now')}}</a>
  <span class="form-status" id="setup-status" data-testid="setup-status" role="status"></span>
</div>

% include('confirm_dialog.tpl')

<script src="{{static('js/settings.js')}}" defer></script>
