from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from airnet_restore.cli import main
from airnet_restore.data import AIODataset, TypeSource, augment, read_layout
from airnet_restore.data.check import check_data
from airnet_restore.errors import AirNetError


def save(path: Path, size=(40, 48), grey=False, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if grey else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def official(tmp_path):
    root = tmp_path
    for i in (1, 2, 3):
        save(root / "Derain" / "rainy" / f"rain-{i}.png", seed=i)
        if i != 3:
            save(root / "Derain" / "gt" / f"norain-{i}.png", seed=10 + i)
    save(root / "Dehaze" / "synthetic" / "part1" / "0001_0.8_0.2.jpg")
    save(root / "Dehaze" / "synthetic" / "part2" / "0002_1_0.04.jpg")
    save(root / "Dehaze" / "original" / "0001.jpg")
    save(root / "Dehaze" / "original" / "0002.jpg")
    save(root / "Rain100L" / "input" / "1.png")
    save(root / "Rain100L" / "target" / "1.png")
    save(root / "SOTS" / "input" / "0001_0.8_0.2.jpg")
    save(root / "SOTS" / "target" / "0001.png")
    save(root / "Denoise" / "a.png", grey=True)
    save(root / "Denoise" / "b.jpg")
    (root / "Denoise" / ".DS_Store").write_bytes(b"\x00")
    (root / "Denoise" / "notes.txt").write_text("not an image")
    return root


def test_official_layouts(official):
    pairs, missing = read_layout(official / "Derain", "derain-train")
    assert [p.degraded.name for p in pairs] == ["rain-1.png", "rain-2.png"] and pairs[0].clean.name == "norain-1.png"
    assert [m.name for m in missing] == ["rain-3.png"]
    pairs, missing = read_layout(official / "Dehaze", "dehaze-train")
    assert [(p.degraded.name, p.clean.name) for p in pairs] == [("0001_0.8_0.2.jpg", "0001.jpg"), ("0002_1_0.04.jpg", "0002.jpg")]
    pairs, _ = read_layout(official / "SOTS", "sots")
    assert pairs[0].clean.name == "0001.png"
    pairs, _ = read_layout(official / "Rain100L", "rain100l")
    assert pairs[0].degraded.name == pairs[0].clean.name == "1.png"
    files, _ = read_layout(official / "Denoise", "clean")
    assert [f.name for f in files] == ["a.png", "b.jpg"]  # .DS_Store and notes.txt ignored


def test_missing_folder_says_what_it_must_contain(tmp_path):
    with pytest.raises(AirNetError, match=r"folder not found: .*input \(it must contain"):
        read_layout(tmp_path, "rain100l")
    with pytest.raises(AirNetError, match="unknown layout"):
        read_layout(tmp_path, "imagenet")


def test_paired_folders_match_by_stem(tmp_path):
    save(tmp_path / "input" / "x.jpg")
    save(tmp_path / "target" / "x.png")
    pairs, missing = read_layout(tmp_path, "paired")
    assert len(pairs) == 1 and not missing


def test_data_check_reports_and_exit_codes(official, capsys):
    report = check_data(official / "Denoise", "clean")
    assert report.usable and report.grey == 1 and report.colour == 1 and report.min_size == (40, 48)
    assert main(["data", "check", str(official / "Derain"), "--layout", "derain-train"]) == 1
    out = capsys.readouterr().out
    assert "1 without a partner" in out and "rain-3.png" in out and "NOT USABLE" in out
    (official / "Denoise" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert main(["data", "check", str(official / "Denoise")]) == 1
    assert "1 unreadable" in capsys.readouterr().out
    assert main(["data", "check", str(official / "nowhere")]) == 2


def test_augment_flags_are_the_eight_dihedral_transforms():
    a = np.arange(6).reshape(2, 3)
    outs = [augment(f, a)[0] for f in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    np.testing.assert_array_equal(outs[0], a)
    np.testing.assert_array_equal(outs[1], np.flipud(a))
    np.testing.assert_array_equal(outs[3], np.flipud(np.rot90(a)))


def make_sources(official):
    cleans = tuple(sorted((official / "Denoise").glob("*.[pj][np]g")))
    derain, _ = read_layout(official / "Derain", "derain-train")
    return [
        TypeSource("noise25", clean=cleans),
        TypeSource("haze", clean=cleans),
        TypeSource("rain", pairs=tuple(derain)),
    ]


def test_aio_batches_hold_one_sample_per_type_and_two_crops_of_one_image(official):
    ds = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=4, seed=3)
    loader = DataLoader(ds, batch_size=3, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(batches) == 4
    for ids, d1, d2, c1, _ in batches:
        assert sorted(ids.tolist()) == [0, 1, 2]
        assert d1.shape == (3, 3, 16, 16) and d1.dtype == torch.float32
        assert not torch.equal(d1, d2)  # different crops
        assert not torch.equal(d1, c1)  # degraded
    # the noise sample: residuals are noise of sigma 25 on the same clean image
    _, d1, _, c1, _ = ds[0]
    assert 0.06 < (d1 - c1).std() < 0.12


def test_aio_is_reproducible_and_independent_of_workers(official):
    ds = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=2, seed=1)
    single = [b[1] for b in DataLoader(ds, batch_size=3, num_workers=0)]
    multi = [b[1] for b in DataLoader(ds, batch_size=3, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(single, multi))
    ds.set_epoch(1)
    assert not torch.equal(ds[0][1], single[0][0])  # fresh noise next epoch
    other_rank = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=2, seed=1, rank=1, world_size=2)
    assert not torch.equal(other_rank[0][1], single[0][0])


def test_type_source_needs_exactly_one_kind_of_data(tmp_path):
    with pytest.raises(AirNetError, match="either clean images or"):
        TypeSource("rain")
    with pytest.raises(AirNetError, match="unknown degradation"):
        TypeSource("snow", clean=(tmp_path / "x.png",))


def test_per_type_batches_hold_each_type_that_many_times_from_different_images(official):
    ds = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=2, seed=3, per_type=2)
    assert ds.batch_size == 6 and len(ds) == 12
    ids, d1, *_ = next(iter(DataLoader(ds, batch_size=ds.batch_size)))
    assert sorted(ids.tolist()) == [0, 0, 1, 1, 2, 2]
    assert not torch.equal(d1[0], d1[3])  # the two samples of a type differ
    # one sample per type keeps the paper's batches exactly; indices run on into later epochs
    one = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=2, seed=3)
    later = AIODataset(make_sources(official), patch_size=16, iters_per_epoch=2, seed=3)
    later.set_epoch(1)
    assert torch.equal(one[len(one) + 4][1], later[4][1])


def test_a_missing_split_of_the_photo_pool_names_the_command_that_builds_it(tmp_path):
    from airnet_restore.data.layouts import POOL_COMMAND, list_images

    with pytest.raises(AirNetError, match="build the photo pool first") as missing:
        list_images(tmp_path / "data" / "pool" / "training")
    assert POOL_COMMAND in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(AirNetError, match=r"folder not found: .*photos \(it must contain"):
        list_images(tmp_path / "photos")  # any other folder: what it must hold


def test_the_bundled_credits_name_every_photo_of_the_pool_the_weights_learned_from():
    """CREDITS.md (shipped with the weights) holds the credits table that the manifest gives for the training and
    validation photos, one row each, with a licence and a source."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    table = subprocess.run([sys.executable, str(repo / "data" / "photo_pool.py"), "--credits", "--split", "training",
                            "--split", "validation"], capture_output=True, text=True, check=True).stdout
    manifest = json.loads((repo / "data" / "photo_pool.json").read_text())
    photos = [p for p in manifest["photos"] if p["split"] in ("training", "validation")]
    rows = table.splitlines()[2:]
    assert len(rows) == len(photos) > 200
    assert all(row.count(" | ") == 4 and row.split(" | ")[1] in ("training", "validation") for row in rows)
    assert table in (repo / "src" / "airnet_restore" / "assets" / "CREDITS.md").read_text()
