"""Sequence matching: SeqSLAM-style trajectory search over a shortlist, Delta descriptors and SeqNet.

Exports load on first use, so the CLI reads the method names (``config.METHODS``) without numpy or torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.eval.sequence.config": ("METHODS", "SequenceConfig"),
    "netvlad.eval.sequence.layout": ("DatabaseLayout", "QueryWindow", "query_windows"),
    "netvlad.eval.sequence.seqslam": ("SequenceRanking", "score_candidates", "seqslam_rank"),
    "netvlad.eval.sequence.online": ("OnlineSeqSLAM", "SequenceMatch"),
})
