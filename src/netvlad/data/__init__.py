"""Geo-tagged image datasets: one abstraction, readers for every format, ground truth, image loading.

Exports load on first use, so the CLI lists the dataset formats without importing torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.data.convert": ("convert_to_dvgb",),
    "netvlad.data.dataset": ("GeoDataset", "ImageList"),
    "netvlad.data.images": ("ImageDataset", "ImageDecodeError", "collate_images", "image_size", "load_image"),
    "netvlad.data.info": ("DatasetInfo",),
    "netvlad.data.readers": ("DatasetError", "ReadOptions", "list_formats", "open_dataset"),
    "netvlad.data.summary": ("DatasetSummary", "summarize"),
})
