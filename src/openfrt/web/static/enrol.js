// Enrolment by upload, with the quality feedback for every image: what was measured on the
// face (height, sharpness, frontalness) or why the image was refused. All images of a batch
// are enrolled or none are, so a refusal says the others were not stored either.
//
// A photo with several faces is shown with a box on each face the server found; the officer
// picks one and sends the batch again with that choice. The photo is shown from the file on
// this computer (read into the page, never uploaded for display), boxes from the server's answer.

import { ApiError, api, el, fixed, label, onSubmit } from './console.js';

const form = document.getElementById('enrol');
const feedback = document.getElementById('enrol-feedback');
/** Face chosen per image (by its position in the upload), for photos with several faces. */
const chosen = new Map();

function quality(face) {
  const q = face.quality;
  return `face ${fixed(q.face_height_px, 0)} px high · sharpness ${fixed(q.sharpness, 0)} · `
    + `frontalness ${fixed(q.frontalness, 2)} (yaw ${fixed(q.yaw_deg, 0)}°, roll ${fixed(q.roll_deg, 0)}°) · `
    + `brightness ${fixed(q.brightness, 2)} · detector score ${fixed(face.score, 2)}`;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener('load', () => resolve(reader.result));
    reader.addEventListener('error', () => reject(reader.error));
    reader.readAsDataURL(file);
  });
}

/** The photo with a button over each face; choosing one remembers it for the next submission. */
function picker(file, position, faces) {
  const box = el('div', null, { class: 'face-picker', 'data-testid': 'face-picker' });
  const frame = el('div', null, { class: 'picker-frame' });
  const photo = el('img', null, { alt: `${file.name}: ${faces.length} faces; choose the one to enrol` });
  frame.appendChild(photo);
  const choice = el('p', 'Choose the face to enrol.', { class: 'aside', 'data-testid': 'face-choice' });
  photo.addEventListener('load', () => {
    for (const face of faces) {
      const [x, y, w, h] = face.box;
      const button = el('button', String(face.index + 1), {
        type: 'button', class: 'face-box', 'data-testid': 'face-box', 'data-face': face.index, 'data-box': face.box.join(','),
        'aria-pressed': 'false',
        'aria-label': `face ${face.index + 1}, ${fixed(face.quality.face_height_px, 0)} px high`,
      });
      Object.assign(button.style, {
        left: `${(100 * x) / photo.naturalWidth}%`, top: `${(100 * y) / photo.naturalHeight}%`,
        width: `${(100 * w) / photo.naturalWidth}%`, height: `${(100 * h) / photo.naturalHeight}%`,
      });
      button.addEventListener('click', () => {
        chosen.set(position, face.index);
        frame.querySelectorAll('.face-box').forEach((other) => other.setAttribute('aria-pressed', String(other === button)));
        choice.textContent = `Face ${face.index + 1} chosen (${fixed(face.quality.face_height_px, 0)} px high). `
          + 'Enrol again to use it.';
      });
      frame.appendChild(button);
    }
  });
  readAsDataUrl(file).then((url) => { photo.src = url; });
  box.append(frame, choice);
  return box;
}

function report(result, files) {
  const list = el('ul', null, { class: 'image-feedback' });
  result.images.forEach((image, position) => {
    const item = el('li', null, { 'data-testid': 'image-feedback', 'data-accepted': String(!image.refused) });
    item.appendChild(el('strong', image.image));
    if (image.refused) {
      item.appendChild(el('span', ` refused (${label(image.refused)})`, { class: 'bad' }));
      if (image.error) item.appendChild(el('span', `: ${image.error}`));
    } else if (image.duplicate_of) {
      // Enrolling the same photo twice (a second click, a re-run) stores nothing new.
      const match = image.duplicate_of.match ? ` (${label(image.duplicate_of.match)})` : '';
      item.appendChild(el('span', ` skipped: the subject already has it as reference image #${image.duplicate_of.reference_image}${match}`,
        { class: 'aside', 'data-testid': 'image-duplicate' }));
    } else {
      const verdict = image.reference_image ? ` stored as reference image #${image.reference_image}` : ' passed the checks';
      item.appendChild(el('span', verdict, { class: 'good' }));
    }
    if (image.face) item.appendChild(el('div', quality(image.face), { class: 'quality', 'data-testid': 'image-quality' }));
    if (image.faces && image.faces.length > 1 && files[position]) item.appendChild(picker(files[position], position, image.faces));
    list.appendChild(item);
  });
  const stored = result.images.filter((image) => image.reference_image).length;
  const done = result.created ? 'Enrolled new subject' : stored ? `Added ${stored} image(s) to subject` : 'Nothing new stored for subject';
  const summary = result.enrolled
    ? el('p', `${done} `, { 'data-testid': 'enrol-result', 'data-enrolled': 'true' })
    : el('p', 'Nothing was stored: every image must pass. Choose a face where there are several, or replace the refused '
      + 'images, and enrol again.', { 'data-testid': 'enrol-result', 'data-enrolled': 'false', class: 'bad' });
  if (result.enrolled) {
    summary.appendChild(el('a', result.subject, { href: `/subjects/${encodeURIComponent(result.subject)}` }));
    summary.append('.');
  }
  feedback.replaceChildren(el('h3', 'Quality feedback'), summary, list);
  feedback.hidden = false;
  feedback.scrollIntoView({ block: 'nearest' });
}

if (form) {
  form.elements.images.addEventListener('change', () => chosen.clear());
  onSubmit(form, async () => {
    const files = [...form.elements.images.files];
    const data = new FormData(form);
    for (const [name, value] of [...data.entries()]) {
      if (typeof value === 'string' && value.trim() === '') data.delete(name);
    }
    files.forEach((_, position) => data.append('faces', chosen.has(position) ? String(chosen.get(position)) : ''));
    // 422 is also the answer to a refused image; then the body is the per-image report.
    const result = await api('POST', '/api/subjects', data, [422]);
    if (!result.images) throw new ApiError(422, result.detail, result);
    report(result, files);
  });
}
