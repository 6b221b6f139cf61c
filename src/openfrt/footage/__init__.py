"""Retrospective search of footage: everyone who appears in a recorded file, searched against the
reference database and listed for review (``openfrt search-footage``, the console's *Footage* page).

:mod:`~openfrt.footage.sampling` picks and decodes the frames looked at, :mod:`~openfrt.footage.leads`
turns the live pipeline's alerts into leads and links one person's, :mod:`~openfrt.footage.search`
runs the search over segments and workers, :mod:`~openfrt.footage.records` stores and audits it.
"""
