"""The library's registered names, mirrored here so that argument parsing never imports torch or faiss.

``tests/cli/test_names.py`` checks every tuple against its registry; a new backbone, pooling, format, converter,
index kind, exporter or preset is added to its registry and here.
"""

BACKBONES = ("alexnet", "mobilenet_v2", "resnet18_layer3", "resnet18_layer4", "resnet50_layer3", "resnet50_layer4",
             "vgg16")  # netvlad.models.list_backbones()
POOLS = ("avg", "gem", "max", "netvlad")  # netvlad.models.POOLS
DATASET_FORMATS = ("mat", "csv", "dvgb", "msls", "exif", "sequence")  # netvlad.data.list_formats()
CONVERTERS = ("matlab", "patchnetvlad", "pytorch-netvlad")  # netvlad.models.converters.list_converters()
PUBLISHED = ("patchnetvlad-mapillary-wpca128", "patchnetvlad-mapillary-wpca4096", "patchnetvlad-mapillary-wpca512",
             "patchnetvlad-pittsburgh-wpca128", "patchnetvlad-pittsburgh-wpca4096", "patchnetvlad-pittsburgh-wpca512",
             "vgg16-netvlad-pitts30k", "vgg16-netvlad-tokyotm")  # netvlad.models.pretrained.PUBLISHED
INDEX_KINDS = ("flat", "hnsw", "ivfpq", "opq-ivfpq")  # netvlad.eval.index.INDEX_KINDS
MODEL_EXPORTERS = ("onnx", "torchscript")  # netvlad.eval.export.MODEL_EXPORTERS
POSITION_ESTIMATORS = ("top1", "weighted")  # netvlad.eval.localise.POSITION_ESTIMATORS
CITY_SIZES = ("default", "large", "small", "tiny")  # netvlad.data.synthetic.SIZES
DEMO_PRESETS = ("default", "tiny")  # netvlad.pipeline.PRESETS
# netvlad.train.ClusterConfig's defaults (that class lives beside torch code).
CLUSTER_DEFAULTS = {"num_descriptors": 50_000, "per_image": 100, "num_images": 500, "seed": 0, "niter": 100}
