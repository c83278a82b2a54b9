"""Geo-tagged image datasets: one abstraction, readers for every format, ground truth, image loading."""

from netvlad.data.convert import convert_to_dvgb
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.images import ImageDataset, ImageDecodeError, collate_images, image_size, load_image
from netvlad.data.readers import DatasetError, ReadOptions, list_formats, open_dataset
from netvlad.data.summary import DatasetSummary, summarize

__all__ = ["DatasetError", "DatasetSummary", "GeoDataset", "ImageDataset", "ImageDecodeError", "ImageList",
           "ReadOptions", "collate_images", "convert_to_dvgb", "image_size", "list_formats", "load_image",
           "open_dataset", "summarize"]
