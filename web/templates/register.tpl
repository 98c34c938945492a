% rebase('base.tpl', live=False, **base_env)
% form = get('form', None) or {}  # the values sent, when the page comes back with an error
<section class="card auth-card" aria-labelledby="register-title">
  <h1 id="register-title">{{_('Register')}}</h1>
  <p class="muted">{{_('A new account can see the plant but not change anything; an administrator can give it more rights.')}}</p>
% if get('error'):
  <p class="form-alert" role="alert" data-testid="register-error">{{get('error')}}</p>
% end
  <form method="post" action="/register" class="form-stack" data-testid="register-form">
    <label for="reg-username">{{_('Username')}}</label>
    <input id="reg-username" name="username" value="{{form.get('username') or ''}}" autocomplete="username" autocapitalize="none" autocorrect="off"
           spellcheck="false" required minlength="3" maxlength="32" pattern="[A-Za-z0-9._\-]{3,32}"
           aria-describedby="reg-username-hint" data-testid="register-username">
    <p class="field-hint" id="reg-username-hint">{{_('3–32 characters: a–z, 0–9, “.”, “_” or “-”.')}}</p>
    <label for="reg-name">{{_('Name')}}</label>
    <input id="reg-name" name="name" value="{{form.get('name') or ''}}" autocomplete="name" maxlength="100" data-testid="register-name">
    <label for="reg-email">{{_('E-mail')}}</label>
    <input id="reg-email" name="email" value="{{form.get('email') or ''}}" type="email" autocomplete="email" maxlength="254" data-testid="register-email">
    <label for="reg-password">{{_('Password')}}</label>
    <input id="reg-password" name="password" type="password" autocomplete="new-password" required minlength="10"
           aria-describedby="reg-password-policy" data-testid="register-password">
    <ul class="field-hint policy" id="reg-password-policy" data-testid="password-policy">
      <li>{{_('at least 10 characters')}}</li>
      <li>{{_('not your username')}}</li>
      <li>{{_('not a common password (such as “password123” or a keyboard row)')}}</li>
    </ul>
    <button type="submit" class="btn btn-primary btn-block" data-testid="register-submit">{{_('Create account')}}</button>
  </form>
  <p class="auth-alt">{{_('Already registered?')}} <a href="/login">{{_('Log in')}}</a></p>
</section>
