// A subject's reference images are fetched only when asked for, with the reason recorded in
// the audit log for each image viewed.

import { onSubmit } from './console.js';

const form = document.getElementById('show-images');
if (form) {
  onSubmit(form, async () => {
    const reason = form.elements.reason.value.trim();
    document.querySelectorAll('figure[data-image]').forEach((figure) => {
      const image = figure.querySelector('img');
      image.src = `/api/reference-images/${figure.dataset.image}?${new URLSearchParams({ reason })}`;
      image.hidden = false;
    });
  });
}
