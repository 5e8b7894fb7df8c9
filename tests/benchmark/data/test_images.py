import numpy as np
import pytest
from PIL import Image

from benchmark.data.decode import DecodeError, decode_file
from benchmark.data.images import load_image_set
from benchmark.store.artifacts import ArtifactStore
from registry.datasets import FolderSource
from registry.datasets.digits import DigitsSource
from registry.datasets.sample_photos import SamplePhotosSource


def test_exif_orientation_is_honored(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out, _ = decode_file(tmp_path / "r.jpg", 16)
    # after rotating 90 CW the white half is on top
    assert out[:, :6].mean() > 200 and out[:, -6:].mean() < 50


def test_alpha_is_composited_on_white_and_whole_image_resized(tmp_path):
    rgba = np.zeros((10, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out, gray = decode_file(tmp_path / "a.png", 12)
    assert out.shape == (3, 12, 12) and not gray
    assert tuple(out[:, 6, 1]) == (255, 0, 0) and tuple(out[:, 6, 10]) == (255, 255, 255)


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"not an image at all", "not an image")])
def test_bad_files_raise_decode_error_with_reason(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_file(p, 8)


def test_builtin_datasets(cache):
    store = ArtifactStore(cache)
    d = load_image_set(DigitsSource().list(), 16, store)
    assert d.images.shape == (1797, 3, 16, 16) and d.grayscale and d.n_classes == 10
    s = load_image_set(SamplePhotosSource().list(), 32, store)
    assert s.images.shape == (300, 3, 32, 32) and not s.grayscale and s.class_names == ["china", "flower"]
    assert DigitsSource().list().fingerprint == DigitsSource().list().fingerprint


def test_folder_labels_from_subfolders_and_csv(photo_folder, tmp_path, cache):
    store = ArtifactStore(cache)
    s = load_image_set(FolderSource(photo_folder).list(), 16, store)
    assert s.n == 24 and s.class_names == ["checks", "stripes"] and s.n_labeled == 24
    (photo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,label\nstripes/img_00.png,s\nimg_01.png,s\nchecks/img_00.png,c\n")
    with pytest.warns(UserWarning, match="bare file names match several images"):
        s = load_image_set(FolderSource(photo_folder, csv).list(), 16, store)
    assert s.n == 24 and s.n_labeled == 2 and s.skipped[0][0] == "broken.png"  # img_01.png is ambiguous
    assert s.class_names == ["c", "s"]


def test_a_folder_decode_holds_no_decoded_image_beyond_its_chunk(photo_folder, tmp_path, monkeypatch):
    """The per-file results carry only skip reasons (None: in the per-file cache); the store is filled from
    the cache, equal to the images decoded directly."""
    from benchmark.data import images as images_mod
    from benchmark.data.decode import decode_paths
    from benchmark.data.images import _decode_files, listing_fingerprint

    store = ArtifactStore(tmp_path / "c")
    (photo_folder / "stripes" / "broken.jpg").write_bytes(b"not an image")
    listing = FolderSource(photo_folder).list()
    _fp, shas = listing_fingerprint(listing, store)
    monkeypatch.setattr(images_mod, "CHUNK", 5)
    results, now = _decode_files(listing, shas, 16, store, progress=False)
    assert now == len(results) == 25 and all(r is None or isinstance(r, str) for r in results)
    assert sum(isinstance(r, str) for r in results) == 1
    s = load_image_set(listing, 16, store)
    direct = [r for r in decode_paths(listing.files, 16) if not isinstance(r, str)]
    np.testing.assert_array_equal(np.asarray(s.images), np.stack(direct))
