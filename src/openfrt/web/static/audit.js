// Verifying the audit log's hash chain on request (the check itself is audited).

import { api, el } from './console.js';

const button = document.getElementById('verify');
const box = document.getElementById('verification');

button.addEventListener('click', async () => {
  button.disabled = true;
  box.hidden = false;
  box.className = 'notice';
  box.textContent = 'Verifying…';
  try {
    const report = await api('GET', '/api/audit/verify');
    box.dataset.ok = String(report.ok);
    box.className = report.ok ? 'notice ok' : 'notice bad';
    box.replaceChildren(el('p', report.ok
      ? `Chain intact: ${report.entries} entries, none edited or removed. Head hash ${report.head_hash}.`
      : `The chain is BROKEN: ${report.problems.length} problem(s) in ${report.entries} entries.`));
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
