"""The scoring choices ``openfrt evaluate`` compares, by name.

Apart from :mod:`openfrt.evaluation.scoring` and :mod:`openfrt.evaluation.report`, which use them,
so that the command line can offer them in its help without loading numpy.
"""

from __future__ import annotations

from typing import Literal

#: How several reference images' scores combine (see :func:`openfrt.evaluation.scoring.subject_scores`).
Fusion = Literal["max", "mean", "mean-template"]

#: Score normalisation against a cohort of non-mated faces.
Normalisation = Literal["none", "tnorm", "znorm"]
