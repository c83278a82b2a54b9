"""Second stages on the global descriptors: sequence matching (the plain trajectory score over the whole database,
SeqSLAM-style trajectory search over a shortlist, Delta descriptors, SeqNet) and spatial re-ranking
(:mod:`netvlad.match.verify`).

Exports load on first use, so the CLI reads the method names (``sequence.METHODS``) without numpy or torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.match.sequence": ("METHODS", "SequenceConfig"),
    "netvlad.match.diagonal": ("OnlineDiagonal", "diagonal_rank"),
    "netvlad.match.seqslam": ("DatabaseLayout", "OnlineSeqSLAM", "QueryWindow", "SequenceMatch", "SequenceRanking",
                              "query_windows", "score_candidates", "seqslam_rank"),
})
