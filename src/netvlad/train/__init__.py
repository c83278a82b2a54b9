"""Training NetVLAD: cluster initialisation, the ranking loss, hard-negative mining and the resumable loop.

Exports load on first use, so the CLI reads :class:`TrainConfig` without importing torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.train.train_config": ("TrainConfig", "read_config_file"),
    "netvlad.train.loop": ("train",),
    "netvlad.train.dataset_record": ("train_run",),
    "netvlad.train.loss": ("triplet_ranking_loss",),
    "netvlad.train.mining": ("MinedTuples", "mine", "sample_candidates", "select_tuples"),
    "netvlad.train.pairs": ("pair_distances",),
    "netvlad.train.sets": ("TrainingSet", "holdout_last", "prepare_training_set"),
})
