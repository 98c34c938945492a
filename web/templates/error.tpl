<!DOCTYPE html>
<html lang="{{get('lang', 'en')}}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{_('Error')}} {{get('code', '')}} · Phoenyra EMS</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{{get('static', lambda p: '/static/' + p)('css/app.css')}}">
</head>
<body class="error-page">
  <main class="error-box" role="main">
    <p class="brand-name">Phoenyra EMS</p>
    <h1>{{_('Error')}} <span data-testid="error-code">{{get('code', '')}}</span></h1>
    <p class="error-message" data-testid="error-message">{{_(get('message', None) or 'An unexpected error occurred.')}}</p>
    <p><a href="/">{{_('Back to the dashboard')}}</a></p>
  </main>
</body>
</html>
