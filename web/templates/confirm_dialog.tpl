<%
  # The confirmation before a safety-relevant change is saved (settings.js fills the list and answers it).
%>
<dialog class="confirm-dialog" id="settings-confirm" data-testid="settings-confirm" aria-labelledby="settings-confirm-title">
  <h2 id="settings-confirm-title">{{_('Change safety-relevant settings?')}}</h2>
  <p>{{_('These settings decide how the EMS protects the grid connection and the battery. The change takes effect at once and is recorded in the audit log with your name.')}}</p>
  <ul class="confirm-changes" id="settings-confirm-list" data-testid="settings-confirm-list"></ul>
  <div class="form-actions">
    <button type="button" class="btn btn-danger" id="settings-confirm-ok" data-testid="settings-confirm-ok">{{_('Confirm and save')}}</button>
    <button type="button" class="btn" id="settings-confirm-cancel" data-testid="settings-confirm-cancel">{{_('Cancel')}}</button>
  </div>
</dialog>
