"""openfrt: accountable facial recognition for policing.

The package is split by domain concept; see ``docs/architecture.md``. Data flows one way:
source -> detect -> track -> embed -> match -> alert -> record.
"""

import os

# onnxruntime writes a telemetry session file into TMPDIR and a device id under ~/.cache as soon
# as it is imported (and may send usage events). A system that promises to write nothing about
# passers-by must not leave files it did not choose to write: opt out before anything imports it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
