// Verifying the audit log's hash chain on request (the check itself is audited).

import { api, el } from './console.js';

const button = document.getElementById('verify');
const box = document.getElementById('verification');
const anchor = document.getElementById('anchor');

button.addEventListener('click', async () => {
  button.disabled = true;
  box.hidden = false;
  box.className = 'notice';
  box.textContent = 'Verifying…';
  try {
    const given = anchor.value.trim();
    const report = await api('GET', `/api/audit/verify${given ? `?${new URLSearchParams({ anchor: given })}` : ''}`);
    box.dataset.ok = String(report.ok);
    box.className = report.ok ? 'notice ok' : 'notice bad';
    box.replaceChildren(el('p', report.ok
      ? `Chain intact: ${report.entries} entries, none edited or removed${given ? ', the anchor still in place' : ''}.`
      : `The chain is BROKEN: ${report.problems.length} problem(s) in ${report.entries} entries.`));
    if (report.published_anchors) {
      box.appendChild(el('p', `Checked the ${report.published_anchors} anchor(s) published with deployment records.`,
        { 'data-testid': 'published-anchors' }));
    }
    if (report.anchor) {
      box.appendChild(el('p', `Anchor to keep elsewhere: ${report.anchor}`, { 'data-testid': 'new-anchor' }));
    }
    if (!report.ok) {
      const list = el('ul');
      report.problems.forEach((problem) => list.appendChild(el('li', problem)));
      box.appendChild(list);
    }
  } catch (error) {
    box.className = 'notice bad';
    box.textContent = error.message;
  } finally {
    button.disabled = false;
  }
});
