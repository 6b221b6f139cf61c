// RFR/OIFR search by upload: a ranked list of candidates for a person to review, each shown
// beside the face that was searched, with what its score means for this model.
//
// Each candidate's reference image is one audited viewing (reason: the case reference); the
// searched face comes back in the answer and lives only in this page.

import { api, el, fixed, label, onSubmit } from './console.js';

const form = document.getElementById('search');
const results = document.getElementById('results');

/** What a similarity means, from the model's calibration: how often a stranger scores as high. */
function meaning(candidate, answer) {
  const expected = candidate.expected_at_score;
  if (!expected) return `The model ${answer.model_id} has no calibration: this score cannot be read as an error rate.`;
  const size = `${answer.database_subjects.toLocaleString('en-GB')} subject(s)`;
  if (expected.fpir >= 0.5) {
    return `Most searches for people who are not in the database (${size}) find someone scoring this high: the score alone says little.`;
  }
  const every = expected.fpir > 0 ? `about 1 in ${Math.round(1 / expected.fpir).toLocaleString('en-GB')}` : 'almost none';
  return `Of searches for people who are not in the database (${size}), ${every} find someone scoring this high.`;
}

function candidateCard(candidate, answer, probe) {
  const item = el('li', null, { class: 'candidate', 'data-testid': 'candidate', 'data-subject': candidate.subject });
  const pair = el('div', null, { class: 'pair' });
  const searched = el('figure');
  searched.append(el('img', null, { src: probe, alt: 'The face searched' }), el('figcaption', 'Searched face'));
  const reference = el('figure');
  const image = el('img', null, { alt: `Reference image of ${candidate.display_name}`, 'data-field': 'reference' });
  if (candidate.reference_image) {
    const reason = new URLSearchParams({ reason: `search ${answer.case_ref}: candidate review`, face: 'true' });
    image.src = `/api/reference-images/${candidate.reference_image}?${reason}`;
  }
  reference.append(image, el('figcaption', `Reference image #${candidate.reference_image}`));
  pair.append(searched, reference);
  const facts = el('div', null, { class: 'candidate-facts' });
  const name = el('h3');
  name.append(`${candidate.rank}. `, el('a', candidate.display_name, { href: `/subjects/${encodeURIComponent(candidate.subject)}` }),
    el('span', ` (${candidate.subject})`, { class: 'aside' }));
  facts.append(name, el('p', `Similarity ${fixed(candidate.similarity, 3)}`, { 'data-field': 'similarity', class: 'score' }),
    el('p', meaning(candidate, answer), { class: 'aside', 'data-field': 'meaning' }));
  item.append(pair, facts);
  return item;
}

onSubmit(form, async () => {
  results.hidden = true;
  const answer = await api('POST', '/api/search', new FormData(form));
  const q = answer.face.quality;
  const where = answer.clip_time == null ? `the largest face in ${answer.image}`
    : `the best view of a face in the clip ${answer.image}, at ${fixed(answer.clip_time, 1)} s`;
  document.getElementById('probe-crop').src = answer.probe_crop;
  document.getElementById('probe').textContent = `Searched ${where} (${Math.round(q.face_height_px)} px high, `
    + `sharpness ${Math.round(q.sharpness)}, frontalness ${fixed(q.frontalness, 2)}) for case ${answer.case_ref}.`;
  document.getElementById('scores-note').textContent = `${label(answer.kind)} search with the model ${answer.model_id} over `
    + `${answer.database_subjects} enrolled subject(s). Scores run from 0.5 (unrelated) to 1 (identical); `
    + 'what a score means depends on the model, so each is read against its calibration below.';
  const list = results.querySelector('[data-testid="candidates"]');
  list.replaceChildren(...answer.candidates.map((candidate) => candidateCard(candidate, answer, answer.probe_crop)));
  if (!answer.candidates.length) list.appendChild(el('li', 'No candidates: the reference database is empty for this model.', { class: 'empty' }));
  results.hidden = false;
});
