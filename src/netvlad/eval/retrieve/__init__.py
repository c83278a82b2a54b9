"""Deprecated name of :mod:`netvlad.eval.folder_ranking` (folder ranking; renamed beside :mod:`netvlad.eval.retrieval`,
Recall@N). Every name resolves there; this alias goes in the next release.

A package rather than ``retrieve.py``, so that version control sees ``retrieve.py`` renamed to ``folder_ranking.py``.
"""

import warnings

from netvlad.eval import folder_ranking
from netvlad.eval.folder_ranking import Ranking, rank_folders, ranking_picture, retrieve_folders, write_ranking

__all__ = ["Ranking", "rank_folders", "ranking_picture", "retrieve_folders", "write_ranking"]

warnings.warn("netvlad.eval.retrieve is renamed netvlad.eval.folder_ranking; the old name goes in the next release",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(folder_ranking, name)
