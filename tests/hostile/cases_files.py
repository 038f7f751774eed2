"""Hostile cases: which files `airnet restore` and `airnet inspect` read, write, replace and delete (issue 34)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.hostile.harness import Cases, Scene, bad, cli, data_loss, refused, tiny_weights

CASES = Cases("files")
RNG = np.random.default_rng(34)


def photo(path: Path, size: tuple[int, int] = (24, 24)) -> Path:
    """A small random RGB image at ``path`` (folders made), in the format of its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def restore(*argv: object):
    return cli("restore", *argv, "--weights", tiny_weights(), "-q")


@CASES.add
def output_folder_through_a_folder_that_does_not_exist(scene: Scene) -> None:
    a = photo(scene.root / "w" / "a.png")
    scene.protect()
    refused(restore(a, "-o", scene.root / "w" / "new" / ".."), "overwrite")


@CASES.add
def part_files_of_the_user_survive_a_run(scene: Scene) -> None:
    a = photo(scene.root / "a.png")
    out = scene.root / "out"
    out.mkdir()
    names = [".notes.20240101.part", ".bashrc.backup01.part", ".thesis.docx.12-draft_v2.part", ".clip.mp4.999999-abcdefgh.part"]
    for name in names:
        (out / name).write_bytes(b"the user's own")
    old = time.time() - 7200
    for name in names[:3]:
        os.utime(out / name, (old, old))
    scene.protect()
    result = restore(a, "-o", out)
    if result.code != 0 or not (out / "a.png").is_file():
        bad(f"the restore failed: {result.err}")


@CASES.add
def suffix_with_a_path_escapes_nothing(scene: Scene) -> None:
    a = photo(scene.root / "in" / "a.png")
    photo(scene.root / "victim.png")
    scene.protect()
    refused(restore(a, "-o", scene.root / "out" / "x" / "y", "--suffix", "/../../../victim"), "--suffix")


@CASES.add
def glob_with_dotdot_stays_inside_the_output_folder(scene: Scene) -> None:
    (scene.root / "in" / "a").mkdir(parents=True)
    photo(scene.root / "x.png")
    photo(scene.root / "deep" / "x.png")
    scene.protect()
    result = restore(f"{scene.root}/in/*/../../x.png", "-o", scene.root / "deep" / "out")
    if result.code != 0 or not (scene.root / "deep" / "out" / "x.png").is_file():
        bad(f"expected deep/out/x.png: {result.out} {result.err}")


@CASES.add
def another_existing_file_is_not_replaced_without_overwrite(scene: Scene) -> None:
    x = photo(scene.root / "photos" / "x.png")
    photo(scene.root / "photos" / "x.jpg")
    scene.protect()
    refused(restore(x, "-o", scene.root / "photos", "--ext", "jpg"), "exists", "--overwrite")


@CASES.add
def overwrite_replaces_an_existing_file_that_is_not_an_input(scene: Scene) -> None:
    x = photo(scene.root / "photos" / "x.png")
    other = photo(scene.root / "photos" / "x.jpg")
    scene.protect()
    scene.allow(other)
    result = restore(x, "-o", scene.root / "photos", "--ext", "jpg", "--overwrite")
    if result.code != 0:
        bad(f"--overwrite was refused: {result.err}")


@CASES.add
def skip_existing_skips_and_says_so(scene: Scene) -> None:
    x = photo(scene.root / "x.png")
    photo(scene.root / "out" / "x.png")
    scene.protect()
    result = restore(x, "-o", scene.root / "out", "--skip-existing")
    if result.code != 0 or "skipped" not in result.err or "1 skipped" not in result.out:
        bad(f"expected a skip that is said: {result.out} {result.err}")


@CASES.add
def a_rerun_into_the_input_folder_with_a_suffix_does_not_restore_its_outputs(scene: Scene) -> None:
    photo(scene.root / "same" / "p.png")
    restore(scene.root / "same", "-o", scene.root / "same", "--suffix", "_r")
    scene.protect()
    result = restore(scene.root / "same", "-o", scene.root / "same", "--suffix", "_r")
    if (scene.root / "same" / "p_r_r.png").exists():
        bad("the rerun restored its own output into p_r_r.png")
    refused(result, "--overwrite")
    if "is the output of" not in result.err:
        bad(f"the skipped earlier output is not said: {result.err}")


@CASES.add
def images_inside_the_output_folder_are_skipped_aloud(scene: Scene) -> None:
    photo(scene.root / "in2" / "a.png")
    photo(scene.root / "in2" / "sub" / "z.png")
    scene.protect()
    result = restore(scene.root / "in2", "-o", scene.root / "in2" / "sub")
    if result.code != 0 or "z.png" not in result.err or "inside the output folder" not in result.err:
        bad(f"in2/sub/z.png was skipped silently: {result.out} {result.err}")


@CASES.add
def a_glob_whose_output_folder_is_inside_it_does_not_restore_earlier_outputs(scene: Scene) -> None:
    photo(scene.root / "in" / "a.png")
    pattern, out = f"{scene.root}/in/**/*.png", scene.root / "in" / "out"
    restore(pattern, "-o", out)
    scene.protect()
    restore(pattern, "-o", out, "--overwrite")
    if (out / "out").exists():
        bad("the rerun restored in/out/a.png into in/out/out/a.png")


@CASES.add
def a_symlink_inside_the_output_folder_does_not_lead_out_of_it(scene: Scene) -> None:
    photo(scene.root / "in" / "link" / "a.png")
    photo(scene.root / "elsewhere" / "a.png")
    (scene.root / "out").mkdir()
    (scene.root / "out" / "link").symlink_to(scene.root / "elsewhere", target_is_directory=True)
    scene.protect()
    refused(restore(scene.root / "in", "-o", scene.root / "out", "--overwrite"), "outside the output folder")


@CASES.add
def a_symlinked_output_folder_that_is_the_input_folder(scene: Scene) -> None:
    photo(scene.root / "in" / "a.png")
    (scene.root / "alias").symlink_to(scene.root / "in", target_is_directory=True)
    scene.protect()
    refused(restore(scene.root / "in" / "a.png", "-o", scene.root / "alias"), "overwrite an input")


@CASES.add
def a_hard_link_to_another_input_is_never_replaced(scene: Scene) -> None:
    a = photo(scene.root / "in" / "a.png")
    b = photo(scene.root / "in" / "b.png")
    (scene.root / "out").mkdir()
    os.link(b, scene.root / "out" / "a.png")
    scene.protect()
    result = restore(a, b, "-o", scene.root / "out", "--overwrite")
    refused(result, "never overwritten")


@CASES.add
def overwrite_replaces_only_the_inputs_own_file(scene: Scene) -> None:
    a = photo(scene.root / "in" / "a.png")
    scene.protect()
    scene.allow(a)
    result = restore(a, "-o", scene.root / "in", "--overwrite")
    if result.code != 0:
        bad(f"--overwrite of its own input was refused: {result.err}")


@CASES.add
def two_inputs_with_one_output_are_both_refused(scene: Scene) -> None:
    a = photo(scene.root / "one" / "a.png")
    b = photo(scene.root / "two" / "a.png")
    scene.protect()
    result = restore(a, b, "-o", scene.root / "out")
    refused(result, "2 inputs")
    if (scene.root / "out" / "a.png").exists():
        bad("one of the two was written")


@CASES.add
def an_output_folder_that_is_a_file(scene: Scene) -> None:
    a = photo(scene.root / "a.png")
    (scene.root / "out").write_text("a file")
    scene.protect()
    refused(restore(a, "-o", scene.root / "out"), "not a folder")


@CASES.add
def a_244_byte_name_restores(scene: Scene) -> None:
    a = photo(scene.root / ("n" * 240 + ".png"))
    scene.protect()
    result = restore(a, "-o", scene.root / "out")
    if result.code != 0:
        bad(f"a 244-byte name failed: {result.err}")


@CASES.add
def a_name_too_long_for_its_suffix_fails_alone(scene: Scene) -> None:
    long = photo(scene.root / "in" / ("n" * 248 + ".png"))
    short = photo(scene.root / "in" / "b.png")
    scene.protect()
    result = restore(long, short, "-o", scene.root / "out", "--suffix", "_restored")
    refused(result, "n" * 20)
    if not (scene.root / "out" / "b_restored.png").is_file():
        bad("the batch stopped at the long name")


@CASES.add
def inspect_plot_named_by_a_shell_glob_is_refused(scene: Scene) -> None:
    files = [photo(scene.root / f"{c}.png") for c in "abc"]
    scene.protect()
    refused(cli("inspect", "--plot", *files, "-q"), "never replaced")


@CASES.add
def inspect_plot_onto_an_input_is_refused(scene: Scene) -> None:
    files = [photo(scene.root / f"{c}.png") for c in "abc"]
    scene.protect()
    refused(cli("inspect", *files, "--plot", files[0], "-q"), "never replaced")


@CASES.add
def inspect_map_onto_a_users_file_fails_that_image_only(scene: Scene) -> None:
    a = photo(scene.root / "a.png", (64, 64))
    b = photo(scene.root / "b.png", (64, 64))
    photo(scene.root / "maps" / "a.png.map.png")  # the user's own file where a's map would go
    scene.protect()
    result = cli("inspect", a, b, "--map", scene.root / "maps", "-q")
    refused(result, "never replaced")
    if not (scene.root / "maps" / "b.png.map.png").is_file():
        bad(f"the other image's map was not written: {result.err}")


@CASES.add
def inspect_rewrites_its_own_plot(scene: Scene) -> None:
    files = [photo(scene.root / f"{c}.png", (64, 64)) for c in "abc"]
    plot = scene.root / "plot.png"
    for _ in range(2):
        result = cli("inspect", *files, "--plot", plot, "-q")
        if result.code != 0 or not plot.is_file():
            bad(f"the plot was not (re)written: {result.err}")
    if not files[0].is_file():
        data_loss("an input vanished")


@CASES.add
def inspect_plot_of_too_few_images_keeps_the_results(scene: Scene) -> None:
    a = photo(scene.root / "a.png", (64, 64))
    scene.protect()
    result = cli("inspect", a, "--plot", scene.root / "plot.png")
    refused(result, "at least 3")
    if "a.png:" not in result.out:
        bad(f"the inspection's results were not printed: {result.out}")
