// Enrolment by upload, with the quality feedback for every image: what was measured on the
// face (height, sharpness, frontalness) or why the image was refused. All images of a batch
// are enrolled or none are, so a refusal says the others were not stored either.

import { ApiError, api, el, fixed, label, onSubmit } from './console.js';

const form = document.getElementById('enrol');
const feedback = document.getElementById('enrol-feedback');

function quality(face) {
  const q = face.quality;
  return `face ${fixed(q.face_height_px, 0)} px high · sharpness ${fixed(q.sharpness, 0)} · `
    + `frontalness ${fixed(q.frontalness, 2)} (yaw ${fixed(q.yaw_deg, 0)}°, roll ${fixed(q.roll_deg, 0)}°) · `
    + `brightness ${fixed(q.brightness, 2)} · detector score ${fixed(face.score, 2)}`;
}

function report(result) {
  const list = el('ul', null, { class: 'image-feedback' });
  for (const image of result.images) {
    const item = el('li', null, { 'data-testid': 'image-feedback', 'data-accepted': String(!image.refused) });
    item.appendChild(el('strong', image.image));
    if (image.refused) {
      item.appendChild(el('span', ` refused (${label(image.refused)})`, { class: 'bad' }));
      if (image.error) item.appendChild(el('span', `: ${image.error}`));
    } else {
      const verdict = image.reference_image ? ` stored as reference image #${image.reference_image}` : ' passed the checks';
      item.appendChild(el('span', verdict, { class: 'good' }));
    }
    if (image.face) item.appendChild(el('div', quality(image.face), { class: 'quality', 'data-testid': 'image-quality' }));
    list.appendChild(item);
  }
  const summary = result.enrolled
    ? el('p', `${result.created ? 'Enrolled new subject' : 'Added images to subject'} `, { 'data-testid': 'enrol-result', 'data-enrolled': 'true' })
    : el('p', 'Nothing was stored: every image must pass. Replace the refused ones and try again.', { 'data-testid': 'enrol-result', 'data-enrolled': 'false', class: 'bad' });
  if (result.enrolled) {
    summary.appendChild(el('a', result.subject, { href: `/subjects/${encodeURIComponent(result.subject)}` }));
    summary.append('.');
  }
  feedback.replaceChildren(el('h3', 'Quality feedback'), summary, list);
  feedback.hidden = false;
  feedback.scrollIntoView({ block: 'nearest' });
}

if (form) {
  onSubmit(form, async () => {
    const data = new FormData(form);
    for (const [name, value] of [...data.entries()]) {
      if (typeof value === 'string' && value.trim() === '') data.delete(name);
    }
    // 422 is also the answer to a refused image; then the body is the per-image report.
    const result = await api('POST', '/api/subjects', data, [422]);
    if (!result.images) throw new ApiError(422, result.detail, result);
    report(result);
  });
}
