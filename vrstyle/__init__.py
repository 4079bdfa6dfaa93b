"""vrstyle: real-time artistic style transfer for virtual reality.

Eye buffers are cut into haloed tiles (:mod:`tiles`), stylised by feed-forward style networks
(:mod:`vrstyle.models`) with one set of normalisation statistics per frame, and stitched back
(:mod:`vrstyle.pipeline`).
"""

__version__ = "0.1.0"
