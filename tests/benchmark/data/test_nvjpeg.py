"""The GPU JPEG path (benchmark.data.nvjpeg): its selection, the CPU's parse that routes files, and its decode
run on the CPU (torchvision's decode_jpeg on the CPU is the tested equivalent of the CUDA call)."""
import numpy as np
import pytest
from PIL import Image

from benchmark.data.decode import decode_file
from benchmark.data.images import images_key
from benchmark.data.nvjpeg import decode_batch, decode_files, orient, parse, select_decoder
from tests.conftest import make_photo


def test_decoder_selection_gpu_for_folders_on_cuda_only():
    assert select_decoder("cuda", files=True) == "nvjpeg"
    assert select_decoder("cuda", files=False) == "pil"  # built-in data sets are arrays, not files
    assert select_decoder("cpu", files=True) == "pil"


def test_the_decoder_is_part_of_the_image_key():
    assert images_key("fp", 32) == images_key("fp", 32, "pil") != images_key("fp", 32, "nvjpeg")


def _jpeg(path, size=(64, 48), orientation=None, mode="RGB", **kw):
    img = make_photo(1, np.random.default_rng(0), size).convert(mode)
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    img.save(path, "JPEG", quality=95, **kw)
    return path


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_gpu_path_decode_matches_the_pil_path_with_exif_orientation(tmp_path, orientation):
    path = _jpeg(tmp_path / "a.jpg", orientation=orientation)
    parsed = parse(path)
    assert parsed is not None and parsed.orientation == orientation
    [ours] = decode_batch([parsed], 32, device="cpu")
    ref, _gray = decode_file(path, 32)
    assert ours.shape == ref.shape == (3, 32, 32)
    assert np.abs(ours.astype(int) - ref.astype(int)).mean() < 4  # same image, orientation and resize


def test_orient_matches_pil_exif_transpose_for_all_eight():
    import torch
    from PIL import ImageOps

    base = np.arange(3 * 4 * 6, dtype=np.uint8).reshape(4, 6, 3)
    for o in range(1, 9):
        img = Image.fromarray(base)
        exif = img.getexif()
        exif[0x0112] = o
        img.info["exif"] = exif.tobytes()
        want = np.asarray(ImageOps.exif_transpose(img)).transpose(2, 0, 1)
        got = orient(torch.from_numpy(base.transpose(2, 0, 1).copy()), o).numpy()
        assert np.array_equal(got, want), o


def test_parse_routes_what_nvjpeg_should_not_get_to_the_pil_path(tmp_path):
    png = tmp_path / "a.png"
    make_photo(0, np.random.default_rng(0), (40, 40)).save(png)
    cmyk = _jpeg(tmp_path / "c.jpg", mode="CMYK")
    good = _jpeg(tmp_path / "g.jpg")
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(good.read_bytes()[:-400])
    text = tmp_path / "x.jpg"
    text.write_text("not an image")
    assert parse(good) is not None and parse(_jpeg(tmp_path / "gray.jpg", mode="L")).gray
    assert [parse(p) for p in (png, cmyk, truncated, text, tmp_path / "missing.jpg")] == [None] * 5


def test_decode_files_keeps_the_pil_skip_reasons_and_order(tmp_path):
    files = [_jpeg(tmp_path / "a.jpg"), tmp_path / "b.jpg", _jpeg(tmp_path / "c.jpg", orientation=6)]
    files[1].write_bytes(files[0].read_bytes()[:300])  # truncated
    png = tmp_path / "d.png"
    make_photo(0, np.random.default_rng(1), (30, 50)).save(png)
    files.append(png)
    results, to_pil = decode_files(files, 16, device="cpu")
    assert to_pil == 2
    assert isinstance(results[1], str) and "truncated" in results[1]
    for i in (0, 2, 3):
        assert results[i].shape == (3, 16, 16) and results[i].dtype == np.uint8


def test_a_batch_the_decoder_rejects_is_retried_file_by_file(tmp_path, monkeypatch):
    from benchmark.data import nvjpeg
    good = parse(_jpeg(tmp_path / "a.jpg"))
    bad = nvjpeg.Parsed(b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9", 1, False)  # passes the byte checks only
    out = decode_batch([good, bad, good], 16, device="cpu")
    assert out[0] is not None and out[1] is None and out[2] is not None
