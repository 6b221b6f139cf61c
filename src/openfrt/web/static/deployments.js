// Deployments: plan, change or cancel a plan, authorise and stop (each confirmed with the
// officer's reason, which is recorded), start, and each running deployment's per-camera status
// (fps, frames, faces scanned, alerts, dropped frames) polled every 2 s.

import { api, askReason, el, fixed, onSubmit, say, utc } from './console.js';

const POLL_MS = 2000;
const message = document.getElementById('deployments-message');

/** `name=source` lines as the API's camera map; a malformed line is an error naming it. */
function cameras(text) {
  const map = {};
  for (const line of text.split('\n').map((item) => item.trim()).filter(Boolean)) {
    const split = line.indexOf('=');
    if (split < 1 || split === line.length - 1) throw new Error(`camera line "${line}" is not name=source`);
    map[line.slice(0, split).trim()] = line.slice(split + 1).trim();
  }
  return map;
}

const form = document.getElementById('new-deployment');
if (form) {
  onSubmit(form, async () => {
    const values = Object.fromEntries(new FormData(form).entries());
    const body = {
      name: values.name.trim(),
      purpose: values.purpose.trim(),
      location: values.location.trim(),
      watchlist: values.watchlist,
      cameras: cameras(values.cameras),
    };
    if (values.threshold) body.threshold = Number(values.threshold);
    await api('POST', '/api/deployments', body);
    window.location.reload();
  });
}

// Changing a plan sends only what changed, so an unchanged camera keeps its stored credentials.
const edit = document.getElementById('edit-deployment');
if (edit) {
  onSubmit(edit, async () => {
    const changes = {};
    for (const field of edit.querySelectorAll('[data-original]')) {
      if (field.value.trim() === field.dataset.original.trim()) continue;
      if (field.name === 'cameras') changes.cameras = cameras(field.value);
      else if (field.name === 'threshold') changes.threshold = field.value === '' ? null : Number(field.value);
      else changes[field.name] = field.value.trim();
    }
    if (!Object.keys(changes).length) throw new Error('Nothing was changed.');
    await api('PATCH', `/api/deployments/${encodeURIComponent(edit.dataset.deployment)}`, changes);
    window.location.reload();
  });
}

const cancel = document.getElementById('cancel-deployment');
if (cancel) {
  onSubmit(cancel, async () => {
    const reason = new URLSearchParams({ reason: cancel.elements.reason.value.trim() });
    await api('DELETE', `/api/deployments/${encodeURIComponent(cancel.dataset.deployment)}?${reason}`);
    window.location.assign('/deployments');
  });
}

// Authorising and stopping ask why first; the reason goes into the audit log.
for (const [dialog, attribute, action] of [['authorise-dialog', 'data-authorise', 'authorise'], ['stop-dialog', 'data-stop', 'stop']]) {
  const box = document.getElementById(dialog);
  if (!box) continue;
  askReason(box, attribute, async (deployment, reason) => {
    if (action === 'stop') say(message, `Stopping ${deployment}…`, 'ok');
    await api('POST', `/api/deployments/${encodeURIComponent(deployment)}/${action}`, { reason });
    window.location.reload();
  });
}

// A threshold below the floor: a second authorising officer approves it, with a justification.
document.querySelectorAll('[data-approve-threshold]').forEach((approval) => {
  onSubmit(approval, async () => {
    const { justification } = Object.fromEntries(new FormData(approval).entries());
    await api('POST', `/api/deployments/${encodeURIComponent(approval.dataset.approveThreshold)}/approve-threshold`, { justification });
    window.location.reload();
  });
});

const retention = document.getElementById('run-retention');
if (retention) {
  onSubmit(retention, async () => {
    const report = await api('POST', '/api/retention/run');
    const held = report.held.length ? `; ${report.held.length} due alert(s) kept on hold` : '';
    say(retention, `Deleted ${report.deleted.length} image(s) of alerts raised before ${utc(report.cutoff)}${held}.`, 'ok');
  });
}

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-deployment-action]');
  if (!button) return;
  const { deploymentAction: action, deployment } = button.dataset;
  button.disabled = true;
  say(message, '', 'ok');
  try {
    await api('POST', `/api/deployments/${encodeURIComponent(deployment)}/${action}`);
    window.location.reload();
  } catch (error) {
    say(message, error.message);
    button.disabled = false;
  }
});

const COLUMNS = [
  ['camera', 'Camera', (camera) => camera.camera],
  ['fps', 'fps', (camera) => fixed(camera.fps, 1)],
  ['frames', 'Frames', (camera) => camera.frames],
  ['faces_scanned', 'Faces scanned', (camera) => camera.faces_scanned],
  ['alerts', 'Alerts', (camera) => camera.alerts],
  ['dropped', 'Dropped frames', (camera) => camera.dropped],
  ['finished', 'State', (camera) => (camera.finished ? 'source ended' : 'running')],
];

function liveTable(live) {
  const table = el('table', null, { class: 'live-table' });
  const head = table.createTHead().insertRow();
  COLUMNS.forEach(([, title]) => head.appendChild(el('th', title, { scope: 'col' })));
  const body = table.createTBody();
  for (const camera of live) {
    const row = body.insertRow();
    row.dataset.camera = camera.camera;
    COLUMNS.forEach(([key, , value], index) => {
      row.appendChild(el('td', value(camera), { 'data-field': key, class: index ? 'num' : '' }));
    });
  }
  return table;
}

/** Keep one running deployment's status box current until the deployment ends. */
function watch(box) {
  const name = box.dataset.live;
  const row = document.querySelector(`[data-deployment-row="${CSS.escape(name)}"]`);
  const tick = async () => {
    let deployment;
    try {
      deployment = await api('GET', `/api/deployments/${encodeURIComponent(name)}`);
    } catch (error) {
      box.replaceChildren(el('p', `Status unavailable: ${error.message}`, { class: 'message' }));
      setTimeout(tick, POLL_MS);
      return;
    }
    if (deployment.live) {
      box.replaceChildren(liveTable(deployment.live), el('p', `updated ${utc(new Date().toISOString())}`, { class: 'aside' }));
    }
    if (deployment.status === 'running') {
      setTimeout(tick, POLL_MS);
    } else if (box.closest('[data-reload-on-end]')) {
      window.location.reload(); // the detail page: show the published record
    } else if (row) {
      const status = row.querySelector('[data-field="status"]');
      status.textContent = deployment.status;
      status.dataset.status = deployment.status;
      row.querySelector('[data-field="ended_at"]').textContent = utc(deployment.ended_at);
      row.querySelectorAll('[data-stop]').forEach((button) => button.remove());
      box.prepend(el('p', `Ended ${utc(deployment.ended_at)}; the figures below are the last seen.`, { class: 'aside' }));
    }
  };
  tick();
}

document.querySelectorAll('[data-live]').forEach(watch);
