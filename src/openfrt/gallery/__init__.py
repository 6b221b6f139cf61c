"""The gallery: subjects and their reference images, watchlists, identification and search.

Built on :mod:`openfrt.records` (encrypted, audited storage) and :mod:`openfrt.vision` (the
face engine). :class:`Gallery` is the entry point; see its module for the rules it enforces.
"""

import lazy_loader

# Loaded on first use, like :mod:`openfrt.records`: the quality policy's defaults appear in the
# command line's help, which must not load the face engine or the database.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "gallery": ["EnrolmentReport", "Gallery", "ImageOutcome", "ImageToEnrol", "SubjectInfo", "WatchlistInfo"],
        "matching": ["Candidate", "Identification", "TemplateMatrix"],
        "quality": ["FaceChoice", "QualityPolicy"],
    },
)
