// Creating a watchlist and adding enrolled subjects to one, through the API.

import { api, fields, onSubmit } from './console.js';

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
