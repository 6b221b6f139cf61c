// Footage search: start a search of a file in the footage directory, follow its progress, then
// review its leads — each the face seen, when, and its candidates. Each lead image shown is an
// audited viewing (as alert images are).

import { api, el, fields, fixed, onSubmit, utc } from './console.js';

const form = document.getElementById('footage');
const progress = document.getElementById('progress');
const review = document.getElementById('review');
const POLL_MS = 1000;

/** Seconds into the file as h:mm:ss.s. */
function clock(seconds) {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return `${hours}:${String(minutes).padStart(2, '0')}:${(seconds % 60).toFixed(1).padStart(4, '0')}`;
}

function leadCard(search, lead, number) {
  const item = el('li', null, { class: 'candidate', 'data-testid': 'lead', 'data-time': lead.time });
  const crop = el('img', null, { src: `/api/footage-searches/${search.id}/leads/${lead.id}/crop`, alt: `Face of lead ${number}` });
  const figure = el('figure');
  figure.append(crop, el('figcaption', `at ${clock(lead.time)}`));
  const facts = el('div', null, { class: 'candidate-facts' });
  facts.append(el('h3', `Lead ${number}: seen ${clock(lead.first_seen)} – ${clock(lead.last_seen)}`, { 'data-field': 'seen' }));
  const list = el('ol');
  for (const candidate of lead.candidates) {
    const line = el('li', null, { 'data-subject': candidate.subject });
    line.append(el('a', candidate.subject, { href: `/subjects/${encodeURIComponent(candidate.subject)}` }),
      ` similarity ${fixed(candidate.similarity, 3)}`);
    list.append(line);
  }
  const frame = el('a', 'frame (other faces pixelated)', { href: `/api/footage-searches/${search.id}/leads/${lead.id}/frame`, target: '_blank' });
  facts.append(list, frame);
  item.append(figure, facts);
  return item;
}

function show(search) {
  progress.querySelector('[data-field="file"]').textContent = search.file;
  if (search.status === 'running') {
    progress.hidden = false;
    const share = search.progress ? search.progress.share : 0;
    progress.querySelector('[data-field="bar"]').value = share;
    progress.querySelector('[data-field="status"]').textContent = search.progress
      ? `${Math.round(share * 100)} % at ${fixed(search.progress.speed, 1)}x real time` : 'starting';
    return false;
  }
  progress.hidden = true;
  const summary = search.summary || {};
  review.querySelector('[data-field="summary"]').textContent = search.status === 'failed'
    ? `The search failed: ${search.error}. Leads found before it failed are listed.`
    : `${search.file} (${clock(summary.duration || 0)}), case ${search.case_ref}: ${summary.sampling}; `
      + `${summary.people_searched} people searched, ${search.leads.length} with candidates at or above ${fixed(search.threshold, 3)}; `
      + `${fixed(summary.speed, 1)}x real time.`;
  const list = review.querySelector('[data-testid="leads"]');
  list.replaceChildren(...search.leads.map((lead, index) => leadCard(search, lead, index + 1)));
  if (!search.leads.length) list.append(el('li', 'No one in the footage has a candidate at or above the review threshold.', { class: 'empty' }));
  review.hidden = false;
  return true;
}

async function follow(id) {
  history.replaceState(null, '', `/footage?search=${id}`);
  review.hidden = true;
  for (;;) {
    const search = await api('GET', `/api/footage-searches/${id}`);
    if (show(search)) break;
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
  }
  await listRecent();
}

async function listRecent() {
  const { searches } = await api('GET', '/api/footage-searches');
  const list = document.getElementById('recent');
  list.replaceChildren(...searches.map((search) => {
    const item = el('li');
    item.append(el('a', `#${search.id} ${search.file}`, { href: `/footage?search=${search.id}` }),
      ` — case ${search.case_ref}, ${search.status}, ${search.leads.length} lead(s), started ${utc(search.started_at)} by ${search.actor}`);
    return item;
  }));
}

async function init() {
  const { files } = await api('GET', '/api/footage-files');
  form.elements.file.replaceChildren(...files.map((file) => el('option', file, { value: file })));
  await listRecent();
  const wanted = new URLSearchParams(window.location.search).get('search');
  if (wanted) await follow(wanted);
}

onSubmit(form, async () => {
  const values = fields(form);
  const started = await api('POST', '/api/footage-searches', { ...values, top: Number(values.top || 5) });
  await follow(started.id);
});

init();
