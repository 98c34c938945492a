%# One range picker of the monitoring page (`which`: chart or sankey); monitoring.js keeps them in step.
<div class="range-picker" role="radiogroup" aria-label="{{_('Time range')}}" data-range-picker="{{which}}" data-testid="{{which}}-range">
% for key, label, title in ranges:
  <button type="button" role="radio" aria-checked="false" data-range="{{key}}" title="{{title}}">{{label}}</button>
% end
</div>
