% rebase('base.tpl', live=False, **base_env)
<div class="page-head">
  <h1>{{_('Help')}}</h1>
  <p class="muted">{{_('How the EMS works, what its pages show and what it does when something goes wrong.')}}</p>
</div>
<nav class="card page-section help-toc" aria-label="{{_('Contents')}}">
  <ol>
    <li><a href="#help-pages">{{_('The pages')}}</a></li>
    <li><a href="#help-strategies">{{_('Strategies')}}</a></li>
    <li><a href="#help-safety">{{_('Alarms and safety')}}</a></li>
    <li><a href="#help-technical">{{_('Technical details')}}</a></li>
    <li><a href="#help-support">{{_('Support')}}</a></li>
  </ol>
</nav>
<article class="card page-section help-text" data-testid="help-text" lang="{{lang}}">
{{!document}}
</article>
