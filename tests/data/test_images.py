"""Image decoding from every PIL mode, EXIF orientation, bad files and the three resize policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.data.images import (
    ImageDataset,
    ImageDecodeError,
    ImageLoader,
    collate_images,
    image_size,
    load_image,
    resize_image,
)
from tests.data.helpers import write_image


def as_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_grey_becomes_three_equal_channels(tmp_path):
    Image.new("L", (5, 3), 100).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.shape == (3, 3, 5) and image.dtype == torch.float32
    assert (as_uint8(image) == 100).all()


def test_rgba_is_composited_over_white(tmp_path):
    Image.new("RGBA", (4, 4), (10, 20, 200, 64)).save(tmp_path / "a.png")
    expected = np.round((np.array([10, 20, 200]) * 64 + 255 * (255 - 64)) / 255)
    np.testing.assert_allclose(as_uint8(load_image(tmp_path / "a.png"))[0, 0], expected, atol=1)


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 250, 100, 5] + [0] * 762)
    image.save(tmp_path / "p.png")
    assert as_uint8(load_image(tmp_path / "p.png"))[0, 0].tolist() == [250, 100, 5]
    image.save(tmp_path / "t.png", transparency=1)  # palette entry 1 fully transparent -> white
    assert as_uint8(load_image(tmp_path / "t.png"))[0, 0].tolist() == [255, 255, 255]


def test_cmyk(tmp_path):
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(tmp_path / "c.tif")
    assert as_uint8(load_image(tmp_path / "c.tif"))[0, 0].tolist() == [0, 255, 255]  # pure cyan
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "c.jpg", quality=100)
    assert (as_uint8(load_image(tmp_path / "c.jpg")) >= 253).all()  # no ink: white (CMYK JPEG)


def test_sixteen_bit_grey_scales_by_65535(tmp_path):
    values = np.array([[0, 32768, 65535, 200]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    got = as_uint8(load_image(tmp_path / "d.png"))[0, :, 0]
    assert got.tolist() == [0, 128, 255, 1]  # a dark 16-bit pixel stays dark


def test_bilevel_and_float_modes(tmp_path):
    Image.new("1", (3, 3), 1).save(tmp_path / "b.png")
    assert (as_uint8(load_image(tmp_path / "b.png")) == 255).all()
    Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32), "F").save(tmp_path / "f.tif")
    assert (as_uint8(load_image(tmp_path / "f.tif")) == 128).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the left half ends on top
    Image.fromarray(pixels).save(tmp_path / "o.jpg", exif=exif, quality=100)
    image = as_uint8(load_image(tmp_path / "o.jpg")).astype(int)
    assert image.shape == (32, 16, 3)
    assert image[4, 8, 0] > 200 and image[4, 8, 2] < 50 and image[28, 8, 2] > 200
    assert image_size(tmp_path / "o.jpg") == (32, 16)


def test_truncated_jpeg_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: cannot decode image .*skip_bad=True"):
        load_image(tmp_path / "cut.jpg")


def test_zero_byte_and_not_an_image_and_missing(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.jpg: image file is empty \(0 bytes\)"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(ImageDecodeError, match=r"text\.jpg: cannot decode"):
        image_size(tmp_path / "text.jpg")
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg: image file not found"):
        load_image(tmp_path / "gone.jpg")


@pytest.mark.parametrize(("resize", "size", "shape"), [
    ("none", (), (3, 50, 100)),
    ("fixed", (30, 20), (3, 30, 20)),
    ("longest", (40,), (3, 20, 40)),
    ("longest", (500,), (3, 50, 100)),  # never upscales
])
def test_resize_policies(tmp_path, resize, size, shape):
    write_image(tmp_path / "r.png", size=(100, 50))
    assert load_image(tmp_path / "r.png", resize, size).shape == shape


def test_longest_side_keeps_aspect_on_a_real_photo(tokyo_pair):
    image = load_image(tokyo_pair / "tokyo_query.jpg", "longest", (640,))
    assert image.shape == (3, 480, 640)  # 3264×2448 phone photo
    assert 0.05 < float(image.mean()) < 0.95


def _reference_load(path, resize, size, fast):
    """The textbook recipe, every step a copy: (draft,) decode, EXIF transpose, RGB, resize, uint8 array → float."""
    from PIL import ImageOps

    from netvlad.data.images import draft_for_resize

    with Image.open(path) as image:
        if fast:
            draft_for_resize(image, resize, size)
        image.load()
        image = resize_image(ImageOps.exif_transpose(image).convert("RGB"), resize, size)
        array = np.array(image, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(("resize", "size"), [("fixed", (240, 320)), ("longest", (640,)), ("none", ())])
def test_load_without_copies_gives_the_same_pixels_contiguously(gardens_point, tokyo_pair, tmp_path, resize, size,
                                                                fast):
    turned = tmp_path / "turned.jpg"  # EXIF orientation 6: the one path that still transposes
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(gardens_point / "day_left" / "Image000.jpg").save(turned, exif=exif)
    for path in (gardens_point / "day_left" / "Image000.jpg", tokyo_pair / "tokyo_query.jpg", turned):
        got = load_image(path, resize, size, fast_decode=fast)
        assert got.is_contiguous() and torch.equal(got, _reference_load(path, resize, size, fast))


def test_uint8_load_gives_the_bytes_the_float_load_divides(gardens_point, tokyo_pair):
    for path in (gardens_point / "day_left" / "Image000.jpg", tokyo_pair / "tokyo_db.png"):
        raw = load_image(path, "longest", (320,), uint8=True)
        assert raw.dtype == torch.uint8 and raw.is_contiguous()
        assert torch.equal(raw.float() / 255.0, load_image(path, "longest", (320,)))


@pytest.mark.parametrize(("resize", "size"), [("crop", (2,)), ("fixed", (10,)), ("longest", (10, 20)),
                                              ("longest", (0,))])
def test_bad_resize_specs(resize, size):
    with pytest.raises(ValueError, match="resize"):
        resize_image(Image.new("RGB", (4, 4)), resize, size)


def test_image_dataset_skips_bad_files_and_collates(tmp_path):
    write_image(tmp_path / "a.png", size=(8, 6))
    (tmp_path / "b.jpg").write_bytes(b"")
    paths = [tmp_path / "a.png", tmp_path / "b.jpg"]
    with pytest.raises(ImageDecodeError):
        ImageDataset(paths)[1]
    batch = [ImageDataset(paths, skip_bad=True)[i] for i in range(2)]
    indices, images, bad = collate_images(batch)
    assert indices.tolist() == [0] and images.shape == (1, 3, 6, 8) and bad == [1]


def test_image_loader_raises_a_worker_s_error_unchanged(tmp_path):
    """The exception a worker process raised reaches the caller whole: type, one-line message and attributes."""
    good = write_image(tmp_path / "good.jpg", fmt="JPEG")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:100])
    loader = ImageLoader(ImageDataset([good, bad]), batch_size=1, num_workers=1, collate_fn=collate_images)
    with pytest.raises(ImageDecodeError) as caught:
        list(loader)
    assert str(caught.value).startswith(f"{bad}: cannot decode image") and "\n" not in str(caught.value)
    assert caught.value.path == bad and caught.value.skippable and caught.value.hint
