// Accounts and API tokens (administrators): create, rename, re-role, reset a password, disable
// and enable again, unlock after failed sign-ins, revoke any token; and one's own token (its
// secret shown once).

import { api, el, fields, label, onSubmit, say, utc } from './console.js';

const message = document.getElementById('users-message');

const create = document.getElementById('new-user');
onSubmit(create, async () => {
  await api('POST', '/api/users', fields(create));
  window.location.reload();
});

// -- one user's name, rank, role and password, in a dialog ------------------------------------

const dialog = document.getElementById('manage-user');
const names = document.getElementById('user-names');
const role = document.getElementById('user-role');
const password = document.getElementById('user-password');
let managed = null;

function manage(row) {
  managed = row.dataset.user;
  dialog.querySelector('[data-field="user"]').textContent = managed;
  names.elements.display_name.value = row.dataset.displayName;
  names.elements.rank.value = row.dataset.rank;
  role.elements.role.value = row.dataset.role;
  [names, role, password].forEach((form) => say(form, ''));
  password.reset();
  dialog.showModal();
}

/** Show a user's account as the server now has it in their table row. */
function refresh(user) {
  const row = document.querySelector(`tr[data-user="${CSS.escape(user.name)}"]`);
  Object.assign(row.dataset, { displayName: user.display_name, rank: user.rank || '', role: user.role });
  row.querySelector('[data-field="public-name"]').textContent = user.public_name;
  row.querySelector('[data-field="role"]').textContent = label(user.role);
}

const userPath = () => `/api/users/${encodeURIComponent(managed)}`;

onSubmit(names, async () => {
  refresh(await api('PATCH', userPath(), { display_name: names.elements.display_name.value.trim(), rank: names.elements.rank.value.trim() }));
  say(names, 'Saved.', 'ok');
});
onSubmit(role, async () => {
  refresh(await api('PUT', `${userPath()}/role`, { role: role.elements.role.value }));
  say(role, 'Role changed; their sessions have ended.', 'ok');
});
onSubmit(password, async () => {
  await api('POST', `${userPath()}/password`, { password: password.elements.password.value });
  password.reset();
  say(password, 'Password reset; their sessions have ended.', 'ok');
});

// -- machine tokens -----------------------------------------------------------------------------

/** Add a just-created token to the table (the page is not reloaded: that would lose its secret). */
function listToken(token) {
  const body = document.querySelector('[data-testid="tokens"] tbody');
  body.querySelector('[data-testid="no-tokens"]')?.remove();
  const row = body.insertRow();
  row.dataset.token = token.id;
  [token.id, token.label, token.user, utc(token.created_at), utc(token.last_used_at), 'active'].forEach((text) => row.insertCell().textContent = text);
  row.insertCell().appendChild(el('button', 'Revoke', { type: 'button', class: 'warn', 'data-revoke': token.id }));
}

const tokenForm = document.getElementById('new-token');
onSubmit(tokenForm, async () => {
  const { label: purpose } = fields(tokenForm);
  const token = await api('POST', `/api/users/${encodeURIComponent(tokenForm.dataset.user)}/tokens`, { label: purpose });
  listToken(token);
  // Shown once, in the page only: reloading would lose it, which is the point.
  const box = document.getElementById('token-secret');
  box.querySelector('[data-testid="token-secret"]').textContent = token.token;
  box.hidden = false;
  tokenForm.reset();
});

document.addEventListener('click', async (event) => {
  const open = event.target.closest('[data-manage]');
  const disable = event.target.closest('[data-disable]');
  const enable = event.target.closest('[data-enable]');
  const revoke = event.target.closest('[data-revoke]');
  const unlock = event.target.closest('[data-unlock]');
  try {
    if (unlock) {
      await api('POST', `/api/users/${encodeURIComponent(unlock.dataset.unlock)}/unlock`);
      window.location.reload();
    } else if (open) {
      manage(open.closest('tr'));
    } else if (disable && window.confirm(`Disable ${disable.dataset.disable}? Their sessions end and their tokens are revoked.`)) {
      await api('POST', `/api/users/${encodeURIComponent(disable.dataset.disable)}/disable`);
      window.location.reload();
    } else if (enable && window.confirm(`Let ${enable.dataset.enable} sign in again? Their old tokens stay revoked.`)) {
      await api('POST', `/api/users/${encodeURIComponent(enable.dataset.enable)}/enable`);
      window.location.reload();
    } else if (revoke && window.confirm(`Revoke token #${revoke.dataset.revoke}?`)) {
      await api('DELETE', `/api/tokens/${revoke.dataset.revoke}`);
      window.location.reload();
    }
  } catch (error) {
    say(message, error.message);
  }
});
