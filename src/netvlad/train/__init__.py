"""Training NetVLAD: cluster initialisation, the ranking loss, hard-negative mining and the resumable loop."""

from netvlad.train.clusters import ClusterConfig, initialize_clusters, sample_local_descriptors
from netvlad.train.config import TrainConfig, read_config_file
from netvlad.train.loop import train
from netvlad.train.loss import TripletRankingLoss, triplet_ranking_loss
from netvlad.train.mining import MinedTuples, mine, squared_distance_matrix
from netvlad.train.sets import TrainingSet, holdout_last, prepare_training_set

__all__ = [
    "ClusterConfig", "MinedTuples", "TrainConfig", "TrainingSet", "TripletRankingLoss", "holdout_last",
    "initialize_clusters", "mine", "prepare_training_set", "read_config_file", "sample_local_descriptors",
    "squared_distance_matrix", "train", "triplet_ranking_loss",
]
