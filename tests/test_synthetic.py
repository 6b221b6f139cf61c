"""Synthetic galleries used by the search benchmark: reproducible chunks and who each template is of."""

from __future__ import annotations

import numpy as np

from openfrt.evaluation.synthetic import PROFILES, Generator, StreamedGallery


def test_templates_of_one_person_are_one_person_and_closer_than_strangers() -> None:
    gallery = StreamedGallery(Generator(PROFILES["dlib"], seed=3), 2_500, seed=3, chunk=1_000)
    ids, vectors = (np.concatenate(parts) for parts in zip(*gallery.chunks()))
    people = gallery.people(ids)
    assert len(np.unique(ids)) == len(ids) == 2_500
    assert gallery.people(np.array([-1, ids[7]])).tolist() == [-1, people[7]]
    counts = np.bincount(np.unique(people, return_inverse=True)[1])
    assert 1.5 < counts.mean() < 2.5 and counts.max() > 2  # 1-5+ images a person, mean about 2
    # The same chunks again, in another order of asking: the same people.
    order = np.random.default_rng(0).permutation(len(ids))
    assert (gallery.people(ids[order]) == people[order]).all()
    # Images of one person are more alike than images of two: the grouping is the generator's.
    same = people[:, None] == people[None, :]
    np.fill_diagonal(same, False)
    cosines = vectors @ vectors.T
    strangers = ~same
    np.fill_diagonal(strangers, False)
    assert cosines[same].mean() > cosines[strangers].mean() + 0.05
