// A subject's reference images are fetched only when asked for, with the reason recorded in
// the audit log for each image viewed; one image can be removed for an audited reason.

import { api, askReason, onSubmit } from './console.js';

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

const removal = document.getElementById('remove-image-dialog');
if (removal) {
  askReason(removal, 'data-remove-image', async (image, reason) => {
    await api('DELETE', `/api/reference-images/${image}?${new URLSearchParams({ reason })}`);
    window.location.reload();
  });
}
