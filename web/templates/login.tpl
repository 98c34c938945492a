% rebase('base.tpl', live=False, **base_env)
<section class="card auth-card" aria-labelledby="login-title">
  <h1 id="login-title">{{_('Log in')}}</h1>
  <p class="muted">{{_('Phoenyra EMS controls a battery and its inverter: sign in to see or operate it.')}}</p>
% if get('error'):
  <p class="form-alert" role="alert" data-testid="login-error">{{get('error')}}</p>
% elif get('registered', False):
  <p class="form-status is-ok" role="status" data-testid="registered-note">{{_('If that username was free, your account exists now: log in with it.')}}</p>
% end
  <form method="post" action="/login" class="form-stack" data-testid="login-form">
    <input type="hidden" name="next" value="{{get('next', '/')}}">
    <label for="login-username">{{_('Username')}}</label>
    <input id="login-username" name="username" value="{{get('username', '') or ''}}" autocomplete="username"
           autocapitalize="none" autocorrect="off" spellcheck="false" required autofocus data-testid="login-username">
    <label for="login-password">{{_('Password')}}</label>
    <input id="login-password" name="password" type="password" autocomplete="current-password" required
           data-testid="login-password">
    <button type="submit" class="btn btn-primary btn-block" data-testid="login-submit">{{_('Log in')}}</button>
  </form>
% if get('allow_registration', False):
  <p class="auth-alt" data-testid="register-link">{{_('No account yet?')}} <a href="/register">{{_('Register')}}</a>
    {{_('for read-only access; an administrator can give you more.')}}</p>
% else:
  <p class="auth-alt muted">{{_('Forgot your password or need an account? Ask an administrator.')}}</p>
% end
</section>
