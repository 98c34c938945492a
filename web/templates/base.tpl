<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{get('title', 'Phoenyra EMS')}} · Phoenyra EMS</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/css/app.css">
</head>
<body>
  <header class="site-header">
    <div class="brand">
      <span class="brand-mark" aria-hidden="true"></span>
      <span class="brand-name">Phoenyra EMS</span>
    </div>
    <nav class="tabs" aria-label="Main navigation">
      <ul>
% for path, label in get('nav', []):
%   is_active = (path == get('active', ''))
        <li><a href="{{path}}" class="tab{{' is-active' if is_active else ''}}"{{!' aria-current="page"' if is_active else ''}}>{{label}}</a></li>
% end
      </ul>
    </nav>
    <span id="conn-status" data-testid="conn-status" class="conn-status" data-state="connecting" role="status" aria-live="polite">connecting…</span>
  </header>
  <main id="content" class="content">
{{!base}}
  </main>
  <footer class="site-footer">
    <span>Phoenyra EMS</span>
    <span class="version" data-testid="version">v{{get('version', '')}}</span>
  </footer>
</body>
</html>
