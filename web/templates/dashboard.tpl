% rebase('base.tpl', live=True, **base_env)
<h1 class="visually-hidden">{{_('Dashboard')}}</h1>

<div class="override-banner" id="override-banner" data-testid="override-banner" role="alert" hidden>
  <strong id="override-title" data-testid="override-title"></strong>
  <span id="override-text" data-testid="override-text"></span>
</div>

<section class="kpis" aria-label="{{_('Key figures')}}">
  <article class="card kpi" id="kpi-soc" data-testid="kpi-soc">
    <h2 class="kpi-label">{{_('State of charge')}} <span class="stale-badge" hidden>{{_('stale')}}</span></h2>
    <p class="kpi-value" id="kpi-soc-value" data-testid="kpi-soc-value">—</p>
    <p class="kpi-sub" id="kpi-soc-sub" data-testid="kpi-soc-sub"><span id="kpi-soc-status" translate="no">&nbsp;</span><span id="kpi-soc-alarms"></span></p>
  </article>

  <article class="card kpi kpi-bess" id="kpi-bess-power" data-testid="kpi-bess-power">
    <h2 class="kpi-label">{{_('Battery power')}} <span class="stale-badge" hidden>{{_('stale')}}</span></h2>
    <p class="kpi-value" id="kpi-bess-power-value" data-testid="kpi-bess-power-value">—</p>
    <p class="kpi-sub" id="kpi-bess-power-sub" data-testid="kpi-bess-power-sub">&nbsp;</p>
  </article>

  <article class="card kpi" id="kpi-strategy" data-testid="kpi-strategy">
    <h2 class="kpi-label">{{_('Strategy')}}</h2>
    <p class="kpi-value" id="kpi-strategy-value" data-testid="kpi-strategy-value">—</p>
    <p class="kpi-sub" id="kpi-strategy-sub" data-testid="kpi-strategy-mode">&nbsp;</p>
    <p class="strategy-why">
      <span class="fallback-badge" id="strategy-fallback" data-testid="strategy-fallback" hidden>{{_('fallback')}}</span>
      <span id="strategy-reason" data-testid="strategy-reason"></span>
    </p>
    <p class="strategy-loss" id="strategy-loss" data-testid="strategy-loss" role="status" hidden></p>
% if 'operate' in ((me or {}).get('actions') or []):
    <form class="strategy-control" id="strategy-form" data-requires="operate" data-testid="strategy-form" novalidate>
      <label for="strategy-choice">{{_('Run')}}</label>
      <select id="strategy-choice" name="strategy" data-testid="strategy-choice">
        <option value="auto">{{_('Auto (best per plan)')}}</option>
%   for name, title in get('strategies', []):
        <option value="{{name}}">{{_(title)}}</option>
%   end
      </select>
      <button type="submit" class="btn btn-small" data-testid="strategy-apply">{{_('Apply')}}</button>
      <span class="form-status" id="strategy-status" data-testid="strategy-status" data-error-for="_" role="status"></span>
    </form>
% end
  </article>

  <article class="card kpi" id="kpi-profit" data-testid="kpi-profit">
    <h2 class="kpi-label">{{_('Expected profit (24 h)')}}</h2>
    <p class="kpi-value" id="kpi-profit-value" data-testid="kpi-profit-value">—</p>
    <p class="kpi-sub" id="kpi-profit-sub" data-testid="kpi-profit-sub">{{_('forecast, next 24 h')}}</p>
  </article>
</section>

<section class="card flow-card" aria-labelledby="flow-title" data-testid="flow-now">
  <div class="card-head">
    <h2 id="flow-title">{{_('Right now')}}</h2>
    <span class="muted" id="flow-today" data-testid="flow-today">&nbsp;</span>
  </div>
  <div class="flow-grid">
    <div class="flow-node flow-pv" data-testid="flow-pv"><span class="flow-label">{{_('PV')}}</span>
      <strong class="flow-kw" id="flow-pv-kw">—</strong><span class="flow-dir" id="flow-pv-dir">&nbsp;</span></div>
    <div class="flow-node flow-grid-node" data-testid="flow-grid"><span class="flow-label">{{_('Grid')}}</span>
      <strong class="flow-kw" id="flow-grid-kw">—</strong><span class="flow-dir" id="flow-grid-dir">&nbsp;</span></div>
    <div class="flow-node flow-house" data-testid="flow-house"><span class="flow-label">{{_('House')}}</span>
      <strong class="flow-kw" id="flow-house-kw">—</strong><span class="flow-dir" id="flow-house-dir">&nbsp;</span></div>
    <div class="flow-node flow-bess" data-testid="flow-bess"><span class="flow-label">{{_('Battery')}}</span>
      <strong class="flow-kw" id="flow-bess-kw">—</strong><span class="flow-dir" id="flow-bess-dir">&nbsp;</span></div>
  </div>
</section>

<section class="card chart-card" aria-labelledby="chart-title">
  <div class="card-head">
    <h2 id="chart-title">{{_('Power flow')}}</h2>
    <span class="muted">{{_('last 15 min · kW')}}</span>
  </div>
  <div class="chart-wrap">
    <canvas id="power-chart" data-testid="power-chart" role="img"
            aria-label="{{_('Line chart of PV, load, grid and battery power in kW over the last 15 minutes')}}"></canvas>
  </div>
  <p class="status-line">
    <span>{{_('DSO:')}} <span id="dso-state" data-testid="dso-state" class="dso-state">—</span></span>
    <span class="sep" aria-hidden="true">·</span>
    <span>{{_('Event-loop lag p99:')}} <span id="loop-lag" data-testid="loop-lag">—</span></span>
  </p>
</section>

<div class="plan-grid">
  <section class="card chart-card" aria-labelledby="plan-chart-title">
    <div class="card-head">
      <h2 id="plan-chart-title">{{_('24 h plan')}}</h2>
      <span class="muted" id="plan-meta" data-testid="plan-meta">kW</span>
    </div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="plan-chart" data-testid="plan-chart" role="img"
              aria-label="{{_('Planned battery power (bars, positive = discharging) with PV, load and grid power (lines, grid positive = import) in kW for each quarter hour of the next 24 hours')}}"></canvas>
      <p class="plan-empty" id="plan-empty" data-testid="plan-empty" hidden>
        <strong>{{_('No plan yet')}}</strong><span class="plan-empty-why"></span>
      </p>
    </div>
  </section>

  <section class="card chart-card" aria-labelledby="price-soc-title">
    <div class="card-head">
      <h2 id="price-soc-title">{{_('Price & SoC forecast')}}</h2>
      <span class="muted">ct/kWh · %</span>
    </div>
    <div class="chart-wrap chart-wrap-plan">
      <canvas id="price-soc-chart" data-testid="price-soc-chart" role="img"
              aria-label="{{_('Import price in ct/kWh (stepped line, left axis) and planned state of charge in percent (right axis) for the next 24 hours')}}"></canvas>
      <p class="plan-empty" id="price-soc-empty" data-testid="price-soc-empty" hidden>
        <strong>{{_('No plan yet')}}</strong><span class="plan-empty-why"></span>
      </p>
    </div>
  </section>
</div>

<script src="{{static('vendor/chartjs/chart.umd.min.js')}}" defer></script>
<script src="{{static('js/dashboard.js')}}" defer></script>
<script src="{{static('js/plan.js')}}" defer></script>
