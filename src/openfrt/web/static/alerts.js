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

function fill(card, alert) {
  card.alert = alert;
  card.id = `alert-${alert.id}`; // events sent out link here (/alerts#alert-ID)
  card.dataset.alertId = alert.id;
  card.dataset.status = alert.status;
  setField(card, 'subject', alert.subject);
  setField(card, 'status', label(alert.status));
  setField(card, 'similarity', fixed(alert.similarity, 3));
  setField(card, 'camera', alert.camera);
  setField(card, 'time', utc(alert.wall_time));
  setField(card, 'id', `#${alert.id}`);
  const deployment = card.querySelector('a[data-field="deployment"]');
  deployment.textContent = alert.deployment;
  deployment.href = `/deployments/${encodeURIComponent(alert.deployment)}`;
  const others = (alert.candidates || []).filter(([subject]) => subject !== alert.subject);
  setField(card, 'others', others.length
    ? `Also above the threshold: ${others.map(([subject, score]) => `${subject} (${fixed(score, 3)})`).join(', ')}`
    : '');
  const verdict = alert.status === 'pending' ? ''
    : `${label(alert.status)} · outcome: ${label(alert.outcome)} · by ${alert.adjudicated_by} at ${utc(alert.adjudicated_at)}`
      + (alert.note ? ` · note: ${alert.note}` : '');
  setField(card, 'verdict', verdict);
  const form = card.querySelector('form.adjudicate');
  if (form) form.hidden = alert.status !== 'pending';
  const correct = card.querySelector('[data-action="correct"]');
  if (correct) correct.hidden = alert.status === 'pending';
  fillRetention(card, alert);
}

/** What happens to the alert's images: deleted by retention, kept on a hold, or due to expire. */
function fillRetention(card, alert) {
  const deleted = alert.media_deleted_at !== null;
  const held = alert.held_by !== null;
  setField(card, 'retention', deleted ? `Images deleted by retention at ${utc(alert.media_deleted_at)}.`
    : held ? `Images held past retention by ${alert.held_by} at ${utc(alert.held_at)}: ${alert.hold_reason}`
      : 'Images are deleted when retention falls due unless held for a recorded legal reason.');
  const hold = card.querySelector('form.hold');
  const release = card.querySelector('form.release');
  if (hold) hold.hidden = deleted || held;
  if (release) release.hidden = !held;
}

/** Show the verdict form again, filled in with the recorded verdict, to correct a mistake. */
function reopen(card, form, alert) {
  form.elements.outcome.value = alert.outcome || form.elements.outcome.value;
  form.elements.note.value = alert.note || '';
  form.elements.perceived_ethnicity.value = alert.perceived_ethnicity || '';
  form.elements.perceived_sex.value = alert.perceived_sex || '';
  form.hidden = false;
  card.querySelector('[data-action="correct"]').hidden = true;
  form.elements.outcome.focus();
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
      const body = {
        status: event.submitter.value,
        correcting: card.alert.status === 'pending' ? null : card.alert.status,
        outcome: form.elements.outcome.value,
        note: form.elements.note.value.trim() || null,
        perceived_ethnicity: form.elements.perceived_ethnicity.value || null,
        perceived_sex: form.elements.perceived_sex.value || null,
      };
      const notice = card.querySelector('[data-role="card-message"]');
      say(notice, '');
      try {
        show(await api('POST', `/api/alerts/${alert.id}/adjudication`, body));
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        // Another officer decided first: show their verdict (the form closes), and say why
        // this one was not kept where it stays visible.
        show(await api('GET', `/api/alerts/${alert.id}`));
        say(notice, error.message);
      }
    });
    card.querySelector('[data-action="correct"]').addEventListener('click', () => reopen(card, form, card.alert));
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
    connected('live', 'Live: new alerts appear as they are raised');
    load().catch((error) => say(message, error.message));
  });
  stream.addEventListener('alert', (event) => {
    const alert = JSON.parse(event.data);
    show(alert);
    const card = cards.get(alert.id);
    if (card) card.classList.add('arrived');
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

filter.addEventListener('change', () => load().catch((error) => say(message, error.message)));
listen();
