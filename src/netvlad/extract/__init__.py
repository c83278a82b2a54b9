"""Extraction: inference engines, batching, descriptor stores and their checksums, and the k-means of the NetVLAD
clusters over extracted local descriptors.

Exports load on first use, so the CLI lists the engines without importing torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.extract.clusters": ("ClusterConfig", "ClusterFit", "fit_clusters", "initialize_clusters",
                                 "sample_local_descriptors"),
    "netvlad.extract.descriptors": ("extract_descriptors", "extract_to_store", "iter_descriptors"),
    "netvlad.extract.store": ("DescriptorStore",),
})
