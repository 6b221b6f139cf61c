// What every console page shares: calling the JSON API as the logged-in officer, reading
// forms, showing times and messages, and the log-out and print buttons.
//
// Every change goes through the API with the session cookie and the page's CSRF token, so the
// console can do nothing the API would refuse. Data is put into the page as text, never as
// HTML, so a name or note cannot inject markup.

const csrfMeta = document.querySelector('meta[name="csrf-token"]');

/** An API answer that was not a success, with the server's explanation. */
export class ApiError extends Error {
  constructor(status, detail, body) {
    super(describe(detail) || `request failed (HTTP ${status})`);
    this.status = status;
    this.body = body;
  }
}

/** The server's `detail` as one sentence: FastAPI's validation errors are a list. */
export function describe(detail) {
  if (Array.isArray(detail)) {
    return detail.map((item) => `${(item.loc || []).filter((part) => part !== 'body').join(' ')}: ${item.msg}`).join('; ');
  }
  return detail == null ? '' : String(detail);
}

/**
 * Call the API. `body` is sent as JSON, or as is when it is FormData (uploads).
 * Returns the decoded JSON; throws ApiError unless the status is 2xx or listed in `accept`.
 */
export async function api(method, path, body, accept = []) {
  const headers = { Accept: 'application/json' };
  if (csrfMeta && method !== 'GET') headers['X-CSRF-Token'] = csrfMeta.content;
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  const type = response.headers.get('Content-Type') || '';
  const data = type.includes('application/json') ? await response.json() : await response.text();
  if (response.status === 401 && !accept.includes(401)) { // the session has ended: log in again
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
  }
  if (!response.ok && !accept.includes(response.status)) {
    throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data, data);
  }
  return data;
}

/** A form's named text fields as an object, trimmed (passwords as typed); empty ones left out. */
export function fields(form) {
  const values = {};
  for (const element of form.elements) {
    if (!element.name || element.disabled || ['file', 'submit', 'button'].includes(element.type)) continue;
    if (['checkbox', 'radio'].includes(element.type) && !element.checked) continue;
    const value = element.type === 'password' ? element.value : element.value.trim();
    if (value !== '') values[element.name] = value;
  }
  return values;
}

/** Show `text` in the form's (or element's) message line; kind is 'error' or 'ok'. */
export function say(where, text, kind = 'error') {
  const line = where.matches('.message') ? where : where.querySelector('.message');
  if (!line) return;
  line.textContent = text;
  line.dataset.kind = kind;
}

/** Run `action` for a form's submission, with its buttons disabled and failures shown in it. */
export function onSubmit(form, action) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll('button');
    buttons.forEach((button) => { button.disabled = true; });
    say(form, '');
    try {
      await action(event);
    } catch (error) {
      say(form, error.message || String(error));
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  });
}

/**
 * A <dialog> that asks for an audited reason before acting on what a button names: buttons with
 * `attribute` open it (the attribute's value is the item, shown in its `data-field="item"`
 * elements), its form's submission runs `action(item, reason)`, `data-action="close-dialog"` closes it.
 */
export function askReason(dialog, attribute, action) {
  const form = dialog.querySelector('form');
  document.addEventListener('click', (event) => {
    const button = event.target.closest(`[${attribute}]`);
    if (button) {
      form.reset();
      say(form, '');
      form.dataset.item = button.getAttribute(attribute);
      dialog.querySelectorAll('[data-field="item"]').forEach((node) => { node.textContent = form.dataset.item; });
      dialog.showModal();
    } else if (dialog.open && event.target.closest('[data-action="close-dialog"]')) {
      dialog.close();
    }
  });
  onSubmit(form, () => action(form.dataset.item, form.elements.reason.value.trim()));
}

/** Create an element with text content and attributes (never innerHTML). */
export function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

/** A time as the console shows every time: to the second, in UTC. */
export function utc(iso) {
  if (!iso) return '—';
  return `${new Date(iso).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** An identifier-like value for reading: `confirmed_match` → `confirmed match`. */
export function label(value) {
  return value == null ? '—' : String(value).replaceAll('_', ' ');
}

/** A number with a fixed count of decimals, or a dash. */
export function fixed(value, digits) {
  return value == null ? '—' : Number(value).toFixed(digits);
}

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-action]');
  if (!button) return;
  if (button.dataset.action === 'logout') {
    try {
      await api('DELETE', '/api/session');
    } finally {
      window.location.assign('/login');
    }
  } else if (button.dataset.action === 'print') {
    window.print();
  }
});

// Deletion forms (a subject, a watchlist): DELETE with the audited reason, then go to the list.
document.querySelectorAll('form[data-delete]').forEach((form) => {
  onSubmit(form, async () => {
    const reason = form.elements.reason.value.trim();
    await api('DELETE', `${form.dataset.delete}?${new URLSearchParams({ reason })}`);
    window.location.assign(form.dataset.then);
  });
});
