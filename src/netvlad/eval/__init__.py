"""Evaluation and retrieval: extraction to disk, faiss search, Recall@N, localisation and export."""

from netvlad.eval.extract import extract_descriptors, extract_to_store, iter_descriptors
from netvlad.eval.index import IndexConfig, build_index, search
from netvlad.eval.localise import PlaceIndex, QueryResult, build_place_index
from netvlad.eval.recall import recall_at_n
from netvlad.eval.retrieval import EvalResult, evaluate, evaluate_descriptors
from netvlad.eval.search import exact_search
from netvlad.eval.store import DescriptorStore

__all__ = [
    "DescriptorStore", "EvalResult", "IndexConfig", "PlaceIndex", "QueryResult", "build_index", "build_place_index",
    "evaluate", "evaluate_descriptors", "exact_search",
    "extract_descriptors", "extract_to_store", "iter_descriptors", "recall_at_n", "search",
]
