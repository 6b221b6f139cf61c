// Watchlists: create one; add enrolled subjects found by a search (with why they are listed);
// remove a member for an audited reason.

import { api, askReason, el, fields, label, onSubmit, say } from './console.js';

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

// -- adding members found by a search -----------------------------------------------------------

const members = document.getElementById('add-members');
if (members) {
  const hits = members.querySelector('[data-testid="member-hits"]');
  const listed = new Set([...document.querySelectorAll('[data-member]')].map((row) => row.dataset.member));
  const picked = new Set();
  let asked = 0;

  const find = async () => {
    const text = members.elements.q.value.trim();
    const ask = ++asked;
    if (text.length < 2) {
      hits.replaceChildren();
      return;
    }
    const found = await api('GET', `/api/subjects?${new URLSearchParams({ search: text, limit: 20 })}`);
    if (ask !== asked) return; // a later search has been sent: show only its answer
    hits.replaceChildren(...found.map((subject) => {
      const item = el('li', null, { 'data-testid': 'member-hit', 'data-subject': subject.id });
      const box = el('input', null, { type: 'checkbox', value: subject.id, 'aria-label': `add ${subject.display_name}` });
      box.checked = picked.has(subject.id);
      box.disabled = listed.has(subject.id);
      box.addEventListener('change', () => (box.checked ? picked.add(subject.id) : picked.delete(subject.id)));
      const text = el('label', null, { class: 'check' });
      text.append(box, `${subject.display_name} (${subject.id}) · ${label(subject.category)} · `
        + `${subject.reference_images} image(s)${listed.has(subject.id) ? ' · already on the list' : ''}`);
      item.appendChild(text);
      return item;
    }));
    if (!found.length) hits.appendChild(el('li', `No enrolled subject matches “${text}”.`, { class: 'empty' }));
  };
  members.elements.q.addEventListener('input', () => find().catch((error) => say(members, error.message)));
  members.elements.q.addEventListener('keydown', (event) => { if (event.key === 'Enter') event.preventDefault(); });

  onSubmit(members, async () => {
    if (!picked.size) throw new Error('Search for the subjects to add and tick them first.');
    await api('POST', `/api/watchlists/${encodeURIComponent(members.dataset.watchlist)}/members`,
      { subjects: [...picked], reason: members.elements.reason.value.trim() });
    window.location.reload();
  });
}

// -- removing a member ---------------------------------------------------------------------------

const removal = document.getElementById('remove-member-dialog');
if (removal) {
  askReason(removal, 'data-remove-member', async (subject, reason) => {
    const watchlist = encodeURIComponent(removal.dataset.watchlist);
    await api('DELETE', `/api/watchlists/${watchlist}/members/${encodeURIComponent(subject)}?${new URLSearchParams({ reason })}`);
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
