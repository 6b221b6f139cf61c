"""Live pipeline defaults that the command line shows in its help.

Apart from :mod:`openfrt.live.pipeline`, which uses them, so that ``openfrt live --help`` does not
load the face engine and OpenCV.
"""

from __future__ import annotations

#: Detect on every 2nd frame by default: it reaches about real time at 1080p where every frame
#: does not, with fewer broken tracks; a face must be in view for 3 frames (120 ms at 25 fps)
#: to be confirmed and searched. Live sources that still fall behind drop (and count) frames.
DEFAULT_CADENCE = 2

#: Detect over the whole frame at least once a second; in between, only where there was motion
#: and around tracked faces (:mod:`openfrt.live.regions`). A face that neither moves nor is
#: tracked is found within this many seconds.
DEFAULT_FULL_PASS_SECONDS = 1.0

#: Motion is detected on frames shrunk to this width (a quarter of 1080p's pixels), like a
#: camera's sub-stream; full passes, and windows around faces too small for it, at full resolution.
DEFAULT_COARSE_WIDTH = 960
