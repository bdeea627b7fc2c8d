"""Per-instance transformation stages of the pack pipeline (de-identify,
JPEG 2000), run in worker processes, streaming: the header is parsed with
pydicom (no Pixel Data), transformed, re-encoded, and the Pixel Data element
is either copied byte for byte from the source or replaced by the J2K
encoder's output, frame by frame.  The result is a new Part 10 file in a
private staging folder, which is then scanned like any input so the
DICOMDIR is built from the transformed values only.

``header``: reading and re-encoding the header; ``instance``: one instance
through the stages; ``workers``: the process pool that runs them.
"""
from dicompack.transform.instance import (
    STAGES,
    Outcome,
    TransformSpec,
    lossy_candidate,
    lossy_uid,
    transform_batch,
    transform_instance,
)
from dicompack.transform.workers import ProgressFn, Workers, quiet_libraries

__all__ = ["STAGES", "Outcome", "ProgressFn", "TransformSpec", "Workers", "lossy_candidate", "lossy_uid",
           "quiet_libraries", "transform_batch", "transform_instance"]
