"""The dataset-format registry, importable without numpy or torch: each format's name, help and reader module.

A reader module defines its format with ``@register_reader`` (``netvlad.data.readers.registry``); the line here
declares it in detection order, so ``netvlad --help`` lists the formats without importing the readers (a reader
registered without a declaration works from Python, and the command line lists it once its module is imported).
"""

from __future__ import annotations

from netvlad.registry import Registry

READERS: Registry = Registry("dataset format", known="choose one of", ordered=True)

for _name, _help in (
    ("mat", "Pittsburgh / Tokyo dbStruct .mat (classic or v7.3) with an image root"),
    ("csv", "manifest path,split,lat,lon or path,split,easting,northing[,zone]"),
    ("dvgb", "images/<split>/{database,queries}/@east@north@zone@letter@lat@lon@...@.jpg"),
    ("msls", "Mapillary Street-Level Sequences root (train_val/<city>/{query,database})"),
    ("exif", "folder of photos with EXIF GPS ({database,queries}/ or one folder)"),
    ("sequence", "two folders of frame-synchronised images with matching names (Nordland)"),
    ("bag", "ROS 1 .bag, ROS 2 bag folder or .mcap (--image-topic, --gps-topic/--odom-topic)"),
):
    READERS.declare(_name, f"netvlad.data.readers.{_name}", _help)


def format_names() -> list[str]:
    """The declared and registered format names, in detection order (what ``--format`` accepts)."""
    return READERS.names()
