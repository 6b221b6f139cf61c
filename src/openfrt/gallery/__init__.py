"""The gallery: subjects and their reference images, watchlists, identification and search.

Built on :mod:`openfrt.records` (encrypted, audited storage) and :mod:`openfrt.vision` (the
face engine). :class:`Gallery` is the entry point; see its module for the rules it enforces.
"""

from openfrt.gallery.gallery import EnrolmentReport, Gallery, ImageOutcome, ImageToEnrol, SubjectInfo, WatchlistInfo
from openfrt.gallery.matching import Candidate, Identification, TemplateMatrix
from openfrt.gallery.quality import FaceChoice, QualityPolicy

__all__ = [
    "Candidate",
    "EnrolmentReport",
    "FaceChoice",
    "Gallery",
    "Identification",
    "ImageOutcome",
    "ImageToEnrol",
    "QualityPolicy",
    "SubjectInfo",
    "TemplateMatrix",
    "WatchlistInfo",
]
