"""Open-set (1:N) evaluation of a face engine, and the calibration it ships with.

``dataset`` loads and embeds evaluation folders, ``metrics`` computes NIST FRVT-style TPIR,
FNIR and FPIR, ``calibration`` holds the measured threshold tables the product uses to pick a
default watchlist threshold and to warn when a deployment's settings are unfit.
"""
