// The live alert queue: new alerts are pushed by the server (server-sent events) and appear
// without reloading; each card shows the probe beside the reference image and takes the verdict.
//
// The event stream is opened before the list is read, and cards are keyed by alert id, so an
// alert raised in between is shown once and never missed. Verdicts and holds other officers make
// arrive on the same stream and update the card; a verdict sent from a card that was stale is
// refused by the server (409), and the card then shows what was decided instead. Images are
// plain <img> elements on the API's audited, no-store routes: nothing keeps a copy of them in
// the page's script.

import { api, ApiError, el, fixed, label, onSubmit, say, utc } from './console.js';
import { setSignals, signal, signalsOn } from './notify.js';

const queue = document.getElementById('queue');
const done = document.getElementById('done');
const doneHeading = document.getElementById('done-heading');
const empty = document.getElementById('queue-empty');
const live = document.querySelector('[data-testid="live-status"]');
const filter = document.getElementById('alert-filter');
const message = document.getElementById('alerts-message');
const template = document.getElementById('alert-card');
const cards = new Map();

/** Which list a card belongs in: waiting ones in the queue, the rest below. */
function place(card, alert) {
  const list = alert.status === 'pending' ? queue : done;
  // Newest first: a card goes before the first card with a smaller id.
  const next = [...list.children].find((other) => Number(other.dataset.alertId) < alert.id);
  list.insertBefore(card, next || null);
  empty.hidden = queue.children.length > 0;
  doneHeading.hidden = done.children.length === 0;
  document.title = `${queue.children.length ? `(${queue.children.length}) ` : ''}Alerts · openfrt`;
}

function setField(card, name, text) {
  card.querySelectorAll(`[data-field="${name}"]`).forEach((node) => { node.textContent = text; });
}

/** An officer as other people see them: rank, number and name, not a log-in name. */
function person(alert, name) {
  return (alert.names && alert.names[name]) || name;
}

function verdictLine(alert, verdict) {
  return `${label(verdict.status)} · outcome: ${label(verdict.outcome)} · by ${person(alert, verdict.adjudicated_by)} `
    + `at ${utc(verdict.adjudicated_at)}`;
}

function fill(card, alert) {
  card.alert = alert;
  card.id = `alert-${alert.id}`; // events sent out link here (/alerts#alert-ID)
  card.dataset.alertId = alert.id;
  card.dataset.status = alert.status;
  const info = alert.subject_info;
  setField(card, 'name', info ? info.display_name : alert.subject);
  setField(card, 'subject', info ? `(${alert.subject})` : '');
  setField(card, 'category', info ? label(info.category) : 'no longer in the reference database');
  setField(card, 'listed', info && info.listed_because ? info.listed_because
    : `not recorded${alert.watchlist ? ` (watchlist ${alert.watchlist})` : ''}`);
  setField(card, 'notes', info && info.notes ? info.notes : '—');
  setField(card, 'status', label(alert.status));
  setField(card, 'similarity', alert.threshold == null ? fixed(alert.similarity, 3)
    : `${fixed(alert.similarity, 3)} (threshold ${fixed(alert.threshold, 3)})`);
  setField(card, 'camera', alert.camera);
  setField(card, 'time', utc(alert.wall_time));
  setField(card, 'id', `#${alert.id}`);
  const deployment = card.querySelector('a[data-field="deployment"]');
  deployment.textContent = alert.deployment;
  deployment.href = `/deployments/${encodeURIComponent(alert.deployment)}`;
  const others = alert.others_above_threshold || [];
  setField(card, 'others', others.length
    ? `Also above the threshold: ${others.map((other) => `${other.display_name || other.subject} (${other.subject}, `
      + `${fixed(other.similarity, 3)})`).join('; ')}. Compare them too before acting.`
    : '');
  const verdicts = alert.verdicts || [];
  const current = verdicts[verdicts.length - 1];
  let verdict = '';
  if (alert.status !== 'pending') {
    verdict = current ? verdictLine(alert, current)
      : `${label(alert.status)} · outcome: ${label(alert.outcome)} · by ${person(alert, alert.adjudicated_by)} at ${utc(alert.adjudicated_at)}`;
    if (alert.note) verdict += ` · note: ${alert.note}`;
  }
  setField(card, 'verdict', verdict);
  fillHistory(card, alert, verdicts);
  const form = card.querySelector('form.adjudicate');
  if (form && !form.dataset.correcting) form.hidden = alert.status !== 'pending';
  const correct = card.querySelector('[data-action="correct"]');
  if (correct) correct.hidden = alert.status === 'pending' || (form && !form.hidden);
  fillRetention(card, alert);
}

/** Every verdict the alert has had, oldest first, once it has been corrected. */
function fillHistory(card, alert, verdicts) {
  const history = card.querySelector('.history');
  history.hidden = verdicts.length < 2;
  setField(card, 'history-summary', `Verdict history: ${verdicts.length} verdicts, ${verdicts.length - 1} correction(s)`);
  const list = card.querySelector('[data-field="history"]');
  list.replaceChildren(...verdicts.map((verdict) => {
    const item = el('li', verdictLine(alert, verdict), { 'data-testid': 'history-entry' });
    if (verdict.note) item.append(` · note: ${verdict.note}`);
    if (verdict.correction_reason) item.appendChild(el('div', `Corrected because: ${verdict.correction_reason}`, { class: 'aside' }));
    return item;
  }));
}

/** What happens to the alert's images: deleted by retention, kept on a hold, or due to expire. */
function fillRetention(card, alert) {
  const deleted = alert.media_deleted_at !== null;
  const held = alert.held_by !== null;
  setField(card, 'retention', deleted ? `Images deleted by retention at ${utc(alert.media_deleted_at)}.`
    : held ? `Images held past retention by ${person(alert, alert.held_by)} at ${utc(alert.held_at)}: ${alert.hold_reason}`
      : 'Images are deleted when retention falls due unless held for a recorded legal reason.');
  const hold = card.querySelector('form.hold');
  const release = card.querySelector('form.release');
  if (hold) hold.hidden = deleted || held;
  if (release) release.hidden = !held;
}

/** Open a blank verdict form to correct the recorded verdict, asking why it was wrong. A
    correction is a new verdict: nothing of the earlier one is carried into it. */
function reopen(card, form, alert) {
  form.reset();
  form.dataset.correcting = alert.status;
  const asked = form.querySelector('[data-role="correction"]');
  asked.hidden = false;
  form.elements.reason.required = true;
  const shown = form.querySelector('[data-field="correcting"]');
  shown.hidden = false;
  shown.textContent = `Correcting: ${label(alert.status)} (${label(alert.outcome)}) by ${person(alert, alert.adjudicated_by)}.`;
  form.querySelector('[data-action="cancel-correction"]').hidden = false;
  form.hidden = false;
  card.querySelector('[data-action="correct"]').hidden = true;
  form.elements.reason.focus();
}

/** Close a correction form without sending it (or once it has been sent). */
function closeCorrection(card, form) {
  delete form.dataset.correcting;
  form.reset();
  form.querySelector('[data-role="correction"]').hidden = true;
  form.elements.reason.required = false;
  form.querySelector('[data-field="correcting"]').hidden = true;
  form.querySelector('[data-action="cancel-correction"]').hidden = true;
  fill(card, card.alert);
}

function missing(image, text) {
  image.replaceWith(el('p', text, { class: 'missing' }));
}

function build(alert) {
  const card = template.content.firstElementChild.cloneNode(true);
  const media = alert.media || [];
  const probe = card.querySelector('img[data-field="probe"]');
  if (media.includes('probe_crop')) {
    probe.addEventListener('error', () => missing(probe, 'The probe image could not be loaded.'));
    probe.src = `/api/alerts/${alert.id}/media/probe_crop`;
  } else {
    missing(probe, 'The probe image was deleted by retention.');
  }
  const reference = card.querySelector('img[data-field="reference"]');
  if (reference) {
    reference.addEventListener('error', () => missing(reference, 'The reference image could not be loaded.'));
    reference.src = `/api/alerts/${alert.id}/reference`;
  }
  const toggle = card.querySelector('[data-action="frame"]');
  const frame = card.querySelector('figure.frame');
  if (media.includes('frame')) {
    toggle.addEventListener('click', () => {
      const image = frame.querySelector('img');
      // Loaded on request only: each viewing of the frame is audited.
      if (!image.getAttribute('src')) image.src = `/api/alerts/${alert.id}/media/frame`;
      frame.hidden = !frame.hidden;
      toggle.setAttribute('aria-expanded', String(!frame.hidden));
      toggle.textContent = frame.hidden ? 'Show the frame (other faces pixelated)' : 'Hide the frame';
    });
  } else {
    toggle.remove();
  }
  const form = card.querySelector('form.adjudicate');
  if (form) {
    onSubmit(form, async (event) => {
      const correcting = form.dataset.correcting || null;
      const body = {
        status: event.submitter.value,
        correcting,
        outcome: form.elements.outcome.value,
        note: form.elements.note.value.trim() || null,
        reason: correcting ? form.elements.reason.value.trim() : null,
        perceived_ethnicity: form.elements.perceived_ethnicity.value || null,
        perceived_sex: form.elements.perceived_sex.value || null,
      };
      const notice = card.querySelector('[data-role="card-message"]');
      say(notice, '');
      let answer;
      try {
        answer = await api('POST', `/api/alerts/${alert.id}/adjudication`, body);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        // Another officer decided first: show their verdict (the form closes), and say why
        // this one was not kept where it stays visible.
        answer = await api('GET', `/api/alerts/${alert.id}`);
        say(notice, error.message);
      }
      if (correcting) closeCorrection(card, form);
      show(answer);
    });
    card.querySelector('[data-action="correct"]').addEventListener('click', () => reopen(card, form, card.alert));
    form.querySelector('[data-action="cancel-correction"]').addEventListener('click', () => closeCorrection(card, form));
  }
  const hold = card.querySelector('form.hold');
  if (hold) {
    onSubmit(hold, async () => {
      show(await api('POST', `/api/alerts/${alert.id}/hold`, { reason: hold.elements.reason.value.trim() }));
      hold.reset();
    });
    const release = card.querySelector('form.release');
    onSubmit(release, async () => {
      const reason = release.elements.reason.value.trim();
      const query = reason ? `?${new URLSearchParams({ reason })}` : '';
      show(await api('DELETE', `/api/alerts/${alert.id}/hold${query}`));
      release.reset();
    });
  }
  return card;
}

/** Add or update the card of `alert`, if the chosen filter shows it. */
function show(alert) {
  const wanted = filter.elements.status.value;
  let card = cards.get(alert.id);
  if (wanted && alert.status !== wanted && !card) return;
  if (!card) {
    card = build(alert);
    cards.set(alert.id, card);
  }
  fill(card, alert);
  place(card, alert);
}

/** Read the alerts the filter asks for, page by page (the API pages with `after`). */
async function load() {
  const status = filter.elements.status.value;
  cards.clear();
  queue.replaceChildren();
  done.replaceChildren();
  let after = 0;
  for (;;) {
    const query = new URLSearchParams({ after, limit: 500 });
    if (status) query.set('status', status);
    const page = await api('GET', `/api/alerts?${query}`);
    page.forEach(show);
    if (page.length < 500) break;
    after = page[page.length - 1].id;
  }
  empty.hidden = queue.children.length > 0;
  doneHeading.hidden = done.children.length === 0;
}

function connected(state, text) {
  live.dataset.state = state;
  live.textContent = text;
}

function listen() {
  const stream = new EventSource('/api/alerts/stream');
  stream.addEventListener('open', () => {
    connected('live', 'Live');
    load().catch((error) => say(message, error.message));
  });
  stream.addEventListener('alert', (event) => {
    const alert = JSON.parse(event.data);
    show(alert);
    const card = cards.get(alert.id);
    if (card) card.classList.add('arrived');
    if (alert.status === 'pending') signal(alert);
  });
  stream.addEventListener('alert_changed', (event) => show(JSON.parse(event.data)));
  stream.addEventListener('resync', () => load().catch((error) => say(message, error.message)));
  stream.addEventListener('signed_out', () => { // the session ended or the account was disabled
    stream.close();
    connected('offline', 'Signed out: log in again to see alerts');
  });
  stream.addEventListener('error', () => {
    // The browser retries a dropped connection by itself, but not a refused one (e.g. 401).
    if (stream.readyState === EventSource.CLOSED) {
      connected('offline', 'Disconnected: reload the page (your session may have ended)');
    } else {
      connected('offline', 'Disconnected: reconnecting…');
    }
  });
}

const notify = document.getElementById('notify');

function showSignals(state) {
  const on = signalsOn();
  notify.setAttribute('aria-pressed', String(on));
  notify.textContent = `Sound and notifications: ${on ? 'on' : 'off'}`;
  if (on && state === 'denied') say(message, 'Notifications are blocked in this browser\'s settings; sound and vibration stay on.');
}

notify.addEventListener('click', async () => showSignals(await setSignals(!signalsOn())));
showSignals();
filter.addEventListener('change', () => load().catch((error) => say(message, error.message)));
listen();
