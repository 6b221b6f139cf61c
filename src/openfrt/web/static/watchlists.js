// Creating a watchlist and adding enrolled subjects to one, through the API.

import { api, fields, onSubmit, say } from './console.js';

const create = document.getElementById('new-watchlist');
if (create) {
  onSubmit(create, async () => {
    const body = fields(create);
    if (body.threshold) body.threshold = Number(body.threshold);
    // The form's time is UTC (so the label says); the API wants an explicit zone.
    if (body.expires_at) body.expires_at = new Date(`${body.expires_at}Z`).toISOString();
    const watchlist = await api('POST', '/api/watchlists', body);
    window.location.assign(`/watchlists/${encodeURIComponent(watchlist.name)}`);
  });
}

const members = document.getElementById('add-members');
if (members) {
  onSubmit(members, async () => {
    const subjects = members.elements.subjects.value.split(/[\s,]+/).filter(Boolean);
    await api('POST', `/api/watchlists/${encodeURIComponent(members.dataset.watchlist)}/members`, { subjects });
    window.location.reload();
  });
}

// Moving every watchlist to another face model: started here, run by the server, polled until done.
const migrate = document.getElementById('migrate-model');

function describeMigration(state) {
  if (state.error) return `Migration to ${state.model} failed: ${state.error}`;
  if (state.running) return `Re-embedding with ${state.model}: ${state.done} of ${state.total || '?'} subjects…`;
  if (!state.report) return '';
  const refused = Object.entries(state.report.refused || {});
  if (state.report.completed) return `Migration to ${state.model} complete: every watchlist now uses ${state.report.model_id}.`;
  return `Migration to ${state.model} incomplete: ${refused.map(([subject, why]) => `${subject}: ${why}`).join('; ')}`;
}

async function follow() {
  const models = await api('GET', '/api/models');
  const state = models.migration;
  say(migrate, describeMigration(state), state.error || (state.report && !state.report.completed) ? 'error' : 'ok');
  if (state.running) window.setTimeout(follow, 1000);
  else if (state.report && state.report.completed) window.setTimeout(() => window.location.reload(), 1500);
}

if (migrate) {
  onSubmit(migrate, async () => {
    await api('POST', '/api/models/migrate', fields(migrate));
    await follow();
  });
  if (migrate.querySelector('[data-testid="migration-status"]').textContent.trim()) follow();
}
