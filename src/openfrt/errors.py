"""Exceptions raised by openfrt.

Every failure a user can cause has its own type so that callers (the CLI, the server) can
report exactly what was wrong with which input instead of crashing or passing silently.
"""


class OpenFRTError(Exception):
    """Base class of every error openfrt raises on purpose."""


class ImageError(OpenFRTError):
    """An input image could not be used. ``source`` names the input as the caller gave it."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ImageNotFoundError(ImageError):
    """The path does not exist or cannot be read."""


class EmptyImageError(ImageError):
    """The input has no bytes or no pixels."""


class NotAnImageError(ImageError):
    """The bytes are not in any supported image format."""


class TruncatedImageError(ImageError):
    """The file starts like an image but its data is cut short or corrupt."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class NoFaceError(ImageError):
    """No face was found where one was required."""


class ModelError(OpenFRTError):
    """A model is missing, unreadable, or not of the kind asked for."""


class ModelMismatchError(OpenFRTError):
    """Templates made by different models (or versions) cannot be compared."""


class UnknownPluginError(OpenFRTError):
    """A detector or embedder name that is not registered."""
