% rebase('base.tpl', live=False, **base_env)
<div class="page-head">
  <h1>{{_('Forecasts')}}</h1>
  <p class="muted" id="fc-made" data-testid="fc-made">{{_('What the plan expects: prices, PV and consumption for the next hours, with their uncertainty.')}}</p>
</div>

<section class="card chart-card" aria-labelledby="fc-price-title">
  <div class="card-head">
    <h2 id="fc-price-title">{{_('Price from the grid')}}</h2>
    <span class="muted" id="fc-price-meta" data-testid="fc-price-meta">ct/kWh</span>
  </div>
  <div class="chart-wrap chart-wrap-plan">
    <canvas id="fc-price" data-testid="fc-price" role="img" aria-label="{{_('Import price per quarter hour in ct/kWh: published prices solid, forecast ones dashed')}}"></canvas>
  </div>
</section>

<div class="plan-grid">
  <section class="card chart-card" aria-labelledby="fc-pv-title">
    <div class="card-head">
      <h2 id="fc-pv-title">{{_('PV')}}</h2>
      <span class="muted" id="fc-pv-meta" data-testid="fc-pv-meta">kW</span>
    </div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="fc-pv" data-testid="fc-pv" role="img" aria-label="{{_('PV power forecast in kW with its likely range')}}"></canvas>
    </div>
  </section>
  <section class="card chart-card" aria-labelledby="fc-load-title">
    <div class="card-head">
      <h2 id="fc-load-title">{{_('Consumption')}}</h2>
      <span class="muted" id="fc-load-meta" data-testid="fc-load-meta">kW</span>
    </div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="fc-load" data-testid="fc-load" role="img" aria-label="{{_('Consumption forecast in kW with its likely range')}}"></canvas>
    </div>
  </section>
</div>

<section class="card page-section" aria-labelledby="fc-acc-title">
  <h2 id="fc-acc-title">{{_('How right they were')}}</h2>
  <p class="muted">{{_('The forecasts the plans used, against what was measured, per quarter hour (mean absolute error and bias; a positive bias means more was measured than forecast).')}}</p>
  <div class="table-scroll">
    <table class="data-table" data-testid="fc-accuracy">
      <thead><tr><th scope="col">{{_('Day')}}</th><th scope="col">{{_('Quarter hours')}}</th>
        <th scope="col">{{_('PV error')}}</th><th scope="col">{{_('PV bias')}}</th>
        <th scope="col">{{_('Consumption error')}}</th><th scope="col">{{_('Consumption bias')}}</th></tr></thead>
      <tbody id="fc-accuracy-body"><tr><td colspan="6" class="muted">{{_('Loading…')}}</td></tr></tbody>
    </table>
  </div>
</section>

<script src="{{static('vendor/chartjs/chart.umd.min.js')}}" defer></script>
<script src="{{static('js/forecasts.js')}}" defer></script>
