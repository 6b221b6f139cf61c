// Logging in, and creating the first administrator on a fresh server.

import { api, fields, onSubmit, say } from './console.js';

const login = document.getElementById('login');
if (login) {
  onSubmit(login, async () => {
    const answer = await api('POST', '/api/session', fields(login), [401, 423, 429]);
    if (answer && answer.csrf_token) {
      window.location.assign(login.dataset.next || '/');
    } else if (answer && (answer.error === 'SignInThrottled' || answer.error === 'AccountLocked')) {
      say(login, `${answer.detail[0].toUpperCase()}${answer.detail.slice(1)}.`); // wait, or ask an administrator
    } else {
      say(login, 'Wrong user name or password, or the account is disabled.');
    }
  });
}

const setup = document.getElementById('setup');
if (setup) {
  onSubmit(setup, async () => {
    const values = fields(setup);
    if (values.password !== values.password_again) {
      say(setup, 'The two passwords differ.');
      return;
    }
    delete values.password_again;
    await api('POST', '/api/setup', values);
    window.location.assign('/users');
  });
}
