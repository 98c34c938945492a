% rebase('base.tpl', live=False, **base_env)
<div class="page-head">
  <h1>{{_('Analytics')}}</h1>
  <p class="muted" id="an-period" data-testid="an-period">{{_('The last 30 days, against the same site without the battery.')}}</p>
</div>

<section class="kpis" aria-label="{{_('Key figures')}}">
  <article class="card kpi" data-testid="an-savings">
    <h2 class="kpi-label">{{_('Savings, 30 days')}}</h2>
    <p class="kpi-value" id="an-savings-value" data-testid="an-savings-value">—</p>
    <p class="kpi-sub" id="an-savings-sub">{{_('against no battery')}}</p>
  </article>
  <article class="card kpi" data-testid="an-daily">
    <h2 class="kpi-label">{{_('Average per day')}}</h2>
    <p class="kpi-value" id="an-daily-value" data-testid="an-daily-value">—</p>
    <p class="kpi-sub" id="an-days-sub" data-testid="an-days-sub">&nbsp;</p>
  </article>
  <article class="card kpi" data-testid="an-cycles">
    <h2 class="kpi-label">{{_('Full cycles')}}</h2>
    <p class="kpi-value" id="an-cycles-value" data-testid="an-cycles-value">—</p>
    <p class="kpi-sub" id="an-soc-sub" data-testid="an-soc-sub">&nbsp;</p>
  </article>
  <article class="card kpi" data-testid="an-autarky">
    <h2 class="kpi-label">{{_('Self-sufficiency')}}</h2>
    <p class="kpi-value" id="an-autarky-value" data-testid="an-autarky-value">—</p>
    <p class="kpi-sub" id="an-self-sub" data-testid="an-self-sub">&nbsp;</p>
  </article>
</section>

<div class="plan-grid">
  <section class="card chart-card" aria-labelledby="an-bars-title">
    <div class="card-head"><h2 id="an-bars-title">{{_('Savings per day')}}</h2><span class="muted">€</span></div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="an-bars" data-testid="an-bars" role="img" aria-label="{{_('Bar chart of the savings of each day against no battery, in euros')}}"></canvas>
      <p class="plan-empty" id="an-bars-empty" data-testid="an-bars-empty" hidden><strong>{{_('No history yet')}}</strong></p>
    </div>
  </section>
  <section class="card chart-card" aria-labelledby="an-pie-title">
    <div class="card-head"><h2 id="an-pie-title">{{_('Time per strategy')}}</h2><span class="muted">%</span></div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="an-pie" data-testid="an-pie" role="img" aria-label="{{_('Pie chart of the share of time each strategy was in force')}}"></canvas>
    </div>
  </section>
</div>

<section class="card page-section" aria-labelledby="an-pva-title">
  <div class="card-head">
    <h2 id="an-pva-title">{{_('Plan and what happened')}}</h2>
    <label class="inline-form" for="an-day">{{_('Day')}} <input type="date" id="an-day" data-testid="an-day"></label>
  </div>
  <p class="muted" id="an-pva-summary" data-testid="an-pva-summary">&nbsp;</p>
  <div class="chart-wrap chart-wrap-plan">
    <canvas id="an-pva" data-testid="an-pva" role="img" aria-label="{{_('Planned and measured battery power per quarter hour of the chosen day, in kW')}}"></canvas>
  </div>
</section>

<section class="card page-section" aria-labelledby="an-runs-title">
  <h2 id="an-runs-title">{{_('Last optimizations')}}</h2>
  <div class="table-scroll">
    <table class="data-table" data-testid="an-runs">
      <thead><tr><th scope="col">{{_('When')}}</th><th scope="col">{{_('Strategy')}}</th><th scope="col">{{_('Expected profit')}}</th>
        <th scope="col">{{_('Status')}}</th><th scope="col">{{_('Solver')}}</th><th scope="col">{{_('Duration')}}</th></tr></thead>
      <tbody id="an-runs-body"><tr><td colspan="6" class="muted">{{_('Loading…')}}</td></tr></tbody>
    </table>
  </div>
</section>

<script src="{{static('vendor/chartjs/chart.umd.min.js')}}" defer></script>
<script src="{{static('js/analytics.js')}}" defer></script>
