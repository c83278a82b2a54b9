"""The published NetVLAD models (name, URL, format, expected structure), importable without torch.

:func:`netvlad.models.pretrained.load_pretrained` downloads, converts and caches them; the command line lists the
names from here. A new published model is one :class:`PublishedModel` added to :data:`PUBLISHED`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netvlad.registry import Registry

HLOC = "https://cvg-data.inf.ethz.ch/hloc/netvlad/"
RELJA = "https://www.di.ens.fr/willow/research/netvlad/data/models/"
CLOUDSTOR = "https://cloudstor.aarnet.edu.au/plus/s/"


@dataclass(frozen=True)
class PublishedModel:
    """One published weights file: where it is, its format, what it must contain, and its SHA-256 if known.

    ``sha256=None`` means no hash was published and none could be verified when this table was written;
    such files are checked by structure instead (K, whitening size) after conversion.
    """

    name: str
    url: str
    source: str  # a registered converter
    filename: str
    description: str
    sha256: str | None = None
    num_clusters: int | None = None
    whitening_dim: int | None = None
    note: str = ""


PUBLISHED: Registry[PublishedModel] = Registry("published model", known="known")

for _model in (
    PublishedModel(
        "vgg16-netvlad-pitts30k", HLOC + "Pitts30K_struct.mat", "matlab", "Pitts30K_struct.mat",
        "official MATLAB NetVLAD (Arandjelović et al. 2016): VGG16 conv5_3 + NetVLAD K=64 + WPCA 4096, "
        "trained on Pittsburgh 30k", num_clusters=64, whitening_dim=4096,
        note=f"struct-layout copy (hosted by hloc) of {RELJA}vd16_pitts30k_conv5_3_vlad_preL2_intra_white.mat"),
    PublishedModel(
        "vgg16-netvlad-tokyotm", HLOC + "TokyoTM_struct.mat", "matlab", "TokyoTM_struct.mat",
        "official MATLAB NetVLAD: VGG16 conv5_3 + NetVLAD K=64 + WPCA 4096, trained on Tokyo Time Machine",
        num_clusters=64, whitening_dim=4096,
        note=f"struct-layout copy (hosted by hloc) of {RELJA}vd16_tokyoTM_conv5_3_vlad_preL2_intra_white.mat"),
    *(PublishedModel(
        f"patchnetvlad-{city}-wpca{pcs}", CLOUDSTOR + share + "/download", "patchnetvlad",
        f"{city}_WPCA{pcs}.pth.tar", f"Patch-NetVLAD (Hausler et al. 2021) VGG16 + NetVLAD + WPCA {pcs}, trained "
        f"on {'Mapillary SLS' if city == 'mapillary' else 'Pittsburgh 30k'}; global descriptor only",
        whitening_dim=pcs, note="URL from QVPR/Patch-NetVLAD download_models.py; CloudStor may have retired it")
      for city, pcs, share in (("mapillary", 128, "vvr0jizjti0z2LR"), ("mapillary", 512, "DFxbGgFwh1y1wAz"),
                               ("mapillary", 4096, "ZgW7DMEpeS47ELI"), ("pittsburgh", 128, "2ORvaCckitjz4Sd"),
                               ("pittsburgh", 512, "WKl45MoboSyB4SH"), ("pittsburgh", 4096, "1aoTGbFjsekeKlB"))),
):
    PUBLISHED.add(_model.name, _model, _model.description)
