"""openfrt: accountable facial recognition for policing.

The package is split by domain concept; see ``docs/architecture.md``. Data flows one way:
source -> detect -> track -> embed -> match -> alert -> record.
"""

__version__ = "0.1.0"
