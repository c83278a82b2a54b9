"""Names of the growing place database's search kinds and of the stream's sequence scores; imports neither numpy
nor faiss, so ``netvlad stream --help`` lists them at once (the database itself is :mod:`netvlad.places.database`,
the scores :mod:`netvlad.places.stream_sequence`)."""

from __future__ import annotations

from netvlad.registry import Registry

DATABASE_KINDS: Registry[str] = Registry("place database kind", "choose one of")
DATABASE_KINDS.add("flat", "exact L2 over the descriptors in memory (appending is free)")
DATABASE_KINDS.add("ivfpq", "IVF-PQ: exact until min-train frames, then trained, added to, retrained when grown")

SEQUENCE_SCORES: Registry[str] = Registry("stream sequence score", "choose one of")
SEQUENCE_SCORES.add("diagonal", "mean squared L2 distance along the best constant-velocity trajectory over the whole "
                                "map (lower is surer): what `netvlad evaluate --sequence-method diagonal` ranks by")
SEQUENCE_SCORES.add("distance", "mean L2 distance along the best constant-velocity trajectory (lower is surer; "
                                "comparable across frames: the loop-closure default)")
SEQUENCE_SCORES.add("seqslam", "SeqSLAM's contrast-normalised score over the frame's shortlist, negated (higher is "
                               "surer)")
DEFAULT_STREAM_SCORE = "diagonal"  # what `netvlad evaluate --sequence` ranks by (a test keeps them equal)
