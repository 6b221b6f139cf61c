// RFR/OIFR search by upload: a ranked list of candidates for a person to review.

import { api, el, fixed, onSubmit } from './console.js';

const form = document.getElementById('search');
const results = document.getElementById('results');

onSubmit(form, async () => {
  results.hidden = true;
  const answer = await api('POST', '/api/search', new FormData(form));
  const q = answer.face.quality;
  const where = answer.clip_time == null ? `the largest face in ${answer.image}`
    : `the best view of a face in ${answer.image} (at ${fixed(answer.clip_time, 1)} s)`;
  document.getElementById('probe').textContent = `Searched ${where} (${Math.round(q.face_height_px)} px high, `
    + `sharpness ${Math.round(q.sharpness)}, frontalness ${fixed(q.frontalness, 2)}) for case ${answer.case_ref}, model ${answer.model_id}.`;
  const body = results.querySelector('tbody');
  body.replaceChildren();
  for (const candidate of answer.candidates) {
    const row = body.insertRow();
    row.setAttribute('data-testid', 'candidate');
    row.appendChild(el('td', candidate.rank, { class: 'num' }));
    const subject = el('td');
    subject.appendChild(el('a', candidate.subject, { href: `/subjects/${encodeURIComponent(candidate.subject)}` }));
    row.appendChild(subject);
    row.appendChild(el('td', candidate.display_name));
    row.appendChild(el('td', fixed(candidate.similarity, 3), { class: 'num' }));
  }
  if (!answer.candidates.length) {
    const row = body.insertRow();
    row.appendChild(el('td', 'No candidates: the reference database is empty for this model.', { colspan: 4, class: 'empty' }));
  }
  results.hidden = false;
});
