% rebase('base.tpl', live=True, **base_env)
<%
  can_operate = 'operate' in ((me or {}).get('actions') or [])
  show_sim = bool(get('simulator', False)) and can_operate
  sim_devices = get('devices', []) or []
  ranges = [('hour', _('60 min'), _('the last 60 minutes')), ('day', _('Day'), _('the last 24 hours')),
            ('week', _('Week'), _('the last 7 days')), ('month', _('Month'), _('the last 30 days')),
            ('year', _('Year'), _('the last 365 days'))]
%>
<h1 class="visually-hidden">{{_('Monitoring')}}</h1>

<div class="mon-grid">
  <section class="card mon-card" id="pc-card" aria-labelledby="pc-title" data-testid="pc-panel">
    <div class="card-head">
      <h2 id="pc-title">{{_('Power control')}}</h2>
      <span class="pc-state" id="pc-state" data-testid="pc-state" data-state="unknown">—</span>
    </div>
    <p class="mon-warning" id="pc-disabled" data-testid="pc-disabled" role="alert" hidden>
      {{_('Power control is disabled: the EMS does not write setpoints to the inverter.')}}
    </p>
    <dl class="mon-facts">
      <dt>{{_('Effective setpoint')}}</dt><dd id="pc-setpoint" data-testid="pc-setpoint">—</dd>
      <dt>{{_('Power limit')}}</dt><dd id="pc-limit" data-testid="pc-limit">—</dd>
      <dt>{{_('Export limit')}}</dt><dd id="pc-export" data-testid="pc-export">—</dd>
    </dl>
    <h3 class="mon-sub">{{_('Reasons')}}</h3>
    <ul class="mon-list" id="pc-reasons" data-testid="pc-reasons"><li class="muted">{{_('none')}}</li></ul>
  </section>

  <section class="card mon-card" aria-labelledby="grid-title" data-testid="grid-panel">
    <div class="card-head"><h2 id="grid-title">{{_('Grid connection')}}</h2></div>
    <dl class="mon-facts">
      <dt>{{_('Maximum power')}}</dt><dd id="grid-max" data-testid="grid-max">—</dd>
      <dt>{{_('Utilisation')}}</dt>
      <dd><span class="util" id="grid-utilisation" data-testid="grid-utilisation" data-level="unknown">—</span></dd>
    </dl>
    <div class="util-bar" aria-hidden="true"><span class="util-fill" id="grid-util-fill" data-level="unknown"></span></div>
  </section>

  <section class="card mon-card" aria-labelledby="feedin-title" data-testid="feedin-panel">
    <div class="card-head">
      <h2 id="feedin-title">{{_('Feed-in limitation')}}</h2>
      <span class="pc-state" id="feedin-mode" data-testid="feedin-mode" data-mode="unknown">—</span>
    </div>
    <dl class="mon-facts">
      <dt>{{_('Limit in force')}}</dt><dd id="feedin-pct" data-testid="feedin-pct">—</dd>
      <dt>{{_('Export allowed now')}}</dt><dd id="feedin-export" data-testid="feedin-export">—</dd>
    </dl>
    <p class="muted mon-note" id="feedin-reference" data-testid="feedin-reference"></p>
  </section>

  <section class="card mon-card" aria-labelledby="batt-title" data-testid="battery-panel">
    <div class="card-head">
      <h2 id="batt-title">{{_('Battery')}}</h2>
      <span class="muted" id="batt-status" data-testid="batt-status" translate="no">—</span>
    </div>
    <dl class="mon-facts">
      <dt>{{_('State of charge')}}</dt><dd id="batt-soc" data-testid="batt-soc">—</dd>
      <dt>{{_('State of health')}}</dt><dd id="batt-soh" data-testid="batt-soh">—</dd>
      <dt>{{_('Voltage')}}</dt><dd id="batt-voltage" data-testid="batt-voltage">—</dd>
      <dt>{{_('Current')}}</dt><dd id="batt-current" data-testid="batt-current">—</dd>
      <dt>{{_('Temperature')}}</dt><dd id="batt-temperature" data-testid="batt-temperature">—</dd>
      <dt>{{_('Insulation')}}</dt><dd id="batt-insulation" data-testid="batt-insulation">—</dd>
      <dt>{{_('BMS charge limit')}}</dt><dd id="batt-max-charge" data-testid="batt-max-charge">—</dd>
      <dt>{{_('BMS discharge limit')}}</dt><dd id="batt-max-discharge" data-testid="batt-max-discharge">—</dd>
      <dt>{{_('BMS charge current limit')}}</dt><dd id="batt-max-charge-a" data-testid="batt-max-charge-a">—</dd>
      <dt>{{_('BMS discharge current limit')}}</dt><dd id="batt-max-discharge-a" data-testid="batt-max-discharge-a">—</dd>
      <dt>{{_('Status code')}}</dt><dd id="batt-status-code" data-testid="batt-status-code">—</dd>
      <dt>{{_('Data from')}}</dt><dd id="batt-source" data-testid="batt-source" translate="no">—</dd>
    </dl>
    <h3 class="mon-sub">{{_('Alarms')}}</h3>
    <ul class="mon-list" id="batt-alarms" data-testid="batt-alarms"><li class="muted">{{_('none')}}</li></ul>
  </section>
</div>

<section class="card mon-card" aria-labelledby="hist-title" data-testid="history-panel">
  <div class="card-head card-head-wrap">
    <h2 id="hist-title">{{_('History')}}</h2>
    % include('range_picker.tpl', which='chart')
  </div>
  <p class="muted mon-span" id="hist-span" data-testid="hist-span" aria-live="polite"></p>
  <h3 class="mon-sub">{{_('State of charge')}}</h3>
  <div class="chart-wrap chart-wrap-soc">
    <canvas id="hist-soc" data-testid="hist-soc" role="img" aria-label="{{_('Line chart of the battery state of charge over the chosen range, in percent')}}"></canvas>
    <p class="plan-empty" id="hist-soc-empty" hidden>{{_('No data in this range.')}}</p>
  </div>
  <h3 class="mon-sub">{{_('Power')}}</h3>
  <div class="chart-wrap chart-wrap-plan">
    <canvas id="hist-power" data-testid="hist-power" role="img" aria-label="{{_('Line chart of PV, house, grid and battery power over the chosen range, in kW')}}"></canvas>
    <p class="plan-empty" id="hist-power-empty" hidden>{{_('No data in this range.')}}</p>
  </div>
  <p class="muted mon-note">{{_('Grid: positive is import. Battery: positive is discharge.')}}</p>
</section>

<section class="card mon-card" aria-labelledby="sankey-title" data-testid="sankey-panel">
  <div class="card-head card-head-wrap">
    <h2 id="sankey-title">{{_('Energy flows')}}</h2>
    % include('range_picker.tpl', which='sankey')
  </div>
  <p class="muted mon-span" id="sankey-span" data-testid="sankey-span" aria-live="polite"></p>
  <div class="sankey-wrap">
    <svg id="sankey" data-testid="sankey" class="sankey" viewBox="0 0 640 300" role="img" aria-labelledby="sankey-title sankey-desc"></svg>
    <p class="plan-empty" id="sankey-empty" data-testid="sankey-empty" hidden>{{_('No energy recorded in this range.')}}</p>
  </div>
  <p class="visually-hidden" id="sankey-desc" data-testid="sankey-desc"></p>
  <dl class="mon-facts sankey-totals" data-testid="sankey-totals">
    <dt>{{_('PV produced')}}</dt><dd id="flow-pv" data-testid="flow-pv">—</dd>
    <dt>{{_('House used')}}</dt><dd id="flow-load" data-testid="flow-load">—</dd>
    <dt>{{_('Bought from the grid')}}</dt><dd id="flow-import" data-testid="flow-import">—</dd>
    <dt>{{_('Sold to the grid')}}</dt><dd id="flow-export" data-testid="flow-export">—</dd>
    <dt>{{_('Battery charged')}}</dt><dd id="flow-charge" data-testid="flow-charge">—</dd>
    <dt>{{_('Battery discharged')}}</dt><dd id="flow-discharge" data-testid="flow-discharge">—</dd>
    <dt>{{_('Savings against no battery')}}</dt><dd id="flow-savings" data-testid="flow-savings">—</dd>
  </dl>
</section>

<section class="card mon-card" aria-labelledby="dev-title">
  <div class="card-head"><h2 id="dev-title">{{_('Devices')}}</h2><span class="muted" id="dev-summary" data-testid="dev-summary"></span></div>
  <div class="table-scroll">
    <table class="data-table" id="devices-table" data-testid="devices-table">
      <thead>
        <tr><th scope="col">{{_('Name')}}</th><th scope="col">{{_('Role')}}</th><th scope="col">{{_('Profile')}}</th><th scope="col">{{_('State')}}</th>
            <th scope="col">{{_('Last error')}}</th><th scope="col">{{_('Requests / cycle')}}</th><th scope="col">{{_('Cycle')}}</th></tr>
      </thead>
      <tbody id="devices-body"><tr><td colspan="7" class="muted">{{_('No devices.')}}</td></tr></tbody>
    </table>
  </div>
</section>

% if show_sim:
<section class="card mon-card sim-card" id="sim-events" data-testid="sim-events" aria-labelledby="sim-title">
  <div class="card-head">
    <h2 id="sim-title">{{_('Simulator events')}}</h2>
    <span class="muted">{{_('drive the simulated plant only, never hardware')}}</span>
  </div>
  <div class="sim-row">
    <span class="sim-label">{{_('DSO')}}</span>
    <button type="button" class="btn" data-type="dso_trip" data-testid="sim-dso-trip">{{_('DSO trip')}}</button>
    <label for="sim-dso-limit-pct" class="sim-inline">{{_('Limit')}}
      <input id="sim-dso-limit-pct" data-testid="sim-dso-limit-pct" type="number" min="0" max="100" step="1" value="30"> %</label>
    <button type="button" class="btn" data-type="dso_limit" data-testid="sim-dso-limit">{{_('DSO limit')}}</button>
    <button type="button" class="btn" data-type="dso_normal" data-testid="sim-dso-normal">{{_('DSO normal')}}</button>
  </div>
%   for name in sim_devices:
  <div class="sim-row">
    <span class="sim-label">{{name}}</span>
    <button type="button" class="btn" data-type="device_offline" data-device="{{name}}" data-testid="sim-offline-{{name}}">{{_('Offline')}}</button>
    <button type="button" class="btn" data-type="device_online" data-device="{{name}}" data-testid="sim-online-{{name}}">{{_('Online')}}</button>
  </div>
%   end
  <div class="sim-row">
    <span class="sim-label">{{_('BMS alarm')}}</span>
    <button type="button" class="btn" data-type="alarm" data-alarm="insulation resistance low" data-testid="sim-alarm">{{_('Alarm: insulation resistance low')}}</button>
    <button type="button" class="btn" data-type="clear_alarm" data-alarm="insulation resistance low" data-testid="sim-clear-alarm">{{_('Clear alarm')}}</button>
  </div>
  <p class="sim-result" id="sim-result" data-testid="sim-result" role="status" aria-live="polite"></p>
</section>
% end

<details class="card mon-card json-view" id="json-view" data-testid="json-view">
  <summary>{{_('The whole state as JSON')}}</summary>
  <p class="muted">{{_('What /api/state says, refreshed at most every 2 s while open.')}}</p>
  <pre id="json-view-body" data-testid="json-view-body" translate="no"></pre>
</details>

<script src="{{static('vendor/chartjs/chart.umd.min.js')}}" defer></script>
<script src="{{static('js/monitoring.js')}}" defer></script>
<script src="{{static('js/monitoring_history.js')}}" defer></script>
