// Accounts and API tokens (administrators): create, disable and unlock users, create one's own token, revoke any.

import { api, fields, onSubmit, say } from './console.js';

const message = document.getElementById('users-message');

const create = document.getElementById('new-user');
onSubmit(create, async () => {
  await api('POST', '/api/users', fields(create));
  window.location.reload();
});

const tokenForm = document.getElementById('new-token');
onSubmit(tokenForm, async () => {
  const { label } = fields(tokenForm);
  const token = await api('POST', `/api/users/${encodeURIComponent(tokenForm.dataset.user)}/tokens`, { label });
  // Shown once, in the page only: reloading would lose it, which is the point.
  const box = document.getElementById('token-secret');
  box.querySelector('[data-testid="token-secret"]').textContent = token.token;
  box.hidden = false;
  tokenForm.reset();
});

document.addEventListener('click', async (event) => {
  const disable = event.target.closest('[data-disable]');
  const revoke = event.target.closest('[data-revoke]');
  const unlock = event.target.closest('[data-unlock]');
  try {
    if (unlock) {
      await api('POST', `/api/users/${encodeURIComponent(unlock.dataset.unlock)}/unlock`);
      window.location.reload();
      return;
    }
    if (disable && window.confirm(`Disable ${disable.dataset.disable}? Their sessions end and their tokens are revoked.`)) {
      await api('POST', `/api/users/${encodeURIComponent(disable.dataset.disable)}/disable`);
      window.location.reload();
    } else if (revoke && window.confirm(`Revoke token #${revoke.dataset.revoke}?`)) {
      await api('DELETE', `/api/tokens/${revoke.dataset.revoke}`);
      window.location.reload();
    }
  } catch (error) {
    say(message, error.message);
  }
});
