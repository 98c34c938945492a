<%
  # The language switch: a plain form (no script), POST /language sets the ems_lang cookie and comes back here.
  here = get('active', '/') or '/'
%>
<form class="lang-switch" method="post" action="/language" data-testid="lang-switch">
  <input type="hidden" name="next" value="{{here}}">
  <span class="lang-switch-label" id="lang-switch-label-{{get('lang_place', 'menu')}}">{{_('Language')}}</span>
  <span class="lang-switch-options" role="group" aria-labelledby="lang-switch-label-{{get('lang_place', 'menu')}}">
% for code, name in get('languages', {}).items():
    <button type="submit" name="lang" value="{{code}}" class="btn btn-small{{' is-active' if code == get('lang', 'en') else ''}}"
            lang="{{code}}" data-testid="lang-{{code}}"{{!' aria-pressed="true"' if code == get('lang', 'en') else ' aria-pressed="false"'}}>{{name}}</button>
% end
  </span>
</form>
