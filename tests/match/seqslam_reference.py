"""An independent brute-force SeqSLAM: the full query × database distance matrix, contrast-normalised column by
column, trajectories summed with explicit loops. Slow and obvious; the tests compare the library against it."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def full_scores(queries, database, q_seq, q_frames, db_seq, db_frames, length, velocities, radius, centred=False):
    """(Q, N) trajectory score of every database frame as each query's match (inf where undefined)."""
    distances = np.sqrt(((queries[:, None, :].astype(np.float64) - database[None].astype(np.float64)) ** 2).sum(-1))
    # database sequences in frame order: (sequence, position) of each frame, and the frames of each sequence
    db_lists = {s: sorted(np.flatnonzero(db_seq == s), key=lambda j: (db_frames[j], j)) for s in set(db_seq)}
    where = {j: (s, p) for s, members in db_lists.items() for p, j in enumerate(members)}
    normalised = np.zeros_like(distances)
    for i in range(len(queries)):
        for j in range(len(database)):
            s, p = where[j]
            members = db_lists[s]
            window = [distances[i, members[x]] for x in range(p - radius, p + radius + 1) if 0 <= x < len(members)]
            normalised[i, j] = (distances[i, j] - np.mean(window)) / (np.std(window) + EPS)
    q_lists = {s: sorted(np.flatnonzero(q_seq == s), key=lambda i: (q_frames[i], i)) for s in set(q_seq)}
    before = length // 2 if centred else length - 1
    after = length - 1 - before
    scores = np.full(distances.shape, np.inf)
    for members in q_lists.values():
        for t, i in enumerate(members):
            window = members[max(0, t - before):t + after + 1]
            for j in range(len(database)):
                s, p = where[j]
                best = np.inf
                for v in velocities:
                    values = []
                    for i2 in window:
                        x = p + int(np.rint(v * (q_frames[i2] - q_frames[i])))
                        if 0 <= x < len(db_lists[s]):
                            values.append(normalised[i2, db_lists[s][x]])
                    best = min(best, np.sum(values) / len(window))  # points outside the database count 0
                scores[i, j] = best
    return scores
