"""fer-predict's files (modeling/inference/media.py): large photos give one face, annotated copies keep the input's
name, folder and format at a sensible size, with readable labels, and each JSON line names its copy."""

import json
from pathlib import Path, PurePath

import cv2
import numpy as np
import pytest
from PIL import Image

from modeling.inference.faces import iou
from modeling.inference.fer_predict import main
from modeling.inference.media import BOX_COLOR, copy_bases, copy_format, copy_name, draw_faces, label_style
from tests.tiny_classifier import save_tiny_classifier

ASTRONAUT_FACE = (177, 66, 95, 95)  # the cascade's box on scikit-image's 512 px astronaut


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"))


@pytest.fixture(scope="module")
def astronaut():
    data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) provides the astronaut photo")
    return data.astronaut()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _green(image: np.ndarray) -> np.ndarray:
    return np.all(image == BOX_COLOR, axis=-1)


def test_the_4000_px_astronaut_and_a_6000x4000_jpeg_give_one_face_each_and_2048_px_jpeg_copies(
    model_dir, astronaut, tmp_path
):
    big = cv2.resize(astronaut, (4000, 4000), interpolation=cv2.INTER_CUBIC)  # the cascade found 7 faces at this size
    wide = np.full((4000, 6000, 3), (90, 110, 130), np.uint8)
    wide[:, 1000:5000] = big
    Image.fromarray(big).save(tmp_path / "astronaut.jpg", quality=92)
    Image.fromarray(wide).save(tmp_path / "wide.jpg", quality=92)
    out, annotated = tmp_path / "faces.jsonl", tmp_path / "annotated"

    argv = [str(tmp_path / "astronaut.jpg"), str(tmp_path / "wide.jpg"), "--annotate", str(annotated)]
    assert main([*argv, "--output", str(out), "--model", str(model_dir), "--no_progress"]) == 0

    first, second = _lines(out)
    expected = tuple(round(v * 4000 / 512) for v in ASTRONAUT_FACE)
    assert iou(tuple(first["box"]), expected) > 0.8 and first["annotated"] == str(annotated / "astronaut.jpg")
    assert iou(tuple(second["box"]), (expected[0] + 1000, *expected[1:])) > 0.8
    assert second["annotated"] == str(annotated / "wide.jpg")
    for name, size in (("astronaut.jpg", (2048, 2048)), ("wide.jpg", (2048, 1365))):
        with Image.open(annotated / name) as copy:
            assert (copy.format, copy.size) == ("JPEG", size)
        assert (annotated / name).stat().st_size < 1_500_000  # at full size as PNG: 13 MB and more
    assert sorted(p.name for p in annotated.iterdir()) == ["astronaut.jpg", "wide.jpg"]


def test_copies_mirror_the_folders_keep_names_and_formats_and_each_json_line_names_its_copy(
    model_dir, astronaut, tmp_path
):
    small = cv2.resize(astronaut, (350, 350), interpolation=cv2.INTER_AREA)
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    Image.fromarray(small).save(photos / "a.jpg")
    Image.fromarray(small).save(photos / "b.png")
    Image.fromarray(small).save(photos / "trip" / "a.jpg")  # the same name in a subfolder: no clash
    for folder in ("x", "y"):  # two files of the same name given directly: a real clash
        (tmp_path / folder).mkdir()
        Image.fromarray(small).save(tmp_path / folder / "photo.webp")
    writer = cv2.VideoWriter(str(photos / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (350, 350))
    for _ in range(3):
        writer.write(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    writer.release()
    annotated = tmp_path / "annotated"
    argv = [str(photos), str(tmp_path / "x" / "photo.webp"), str(tmp_path / "y" / "photo.webp")]

    assert main([*argv, "--annotate", str(annotated), "--every_n_frames", "2", "--output", str(tmp_path / "o.jsonl"),
                 "--model", str(model_dir), "--no_progress"]) == 0  # fmt: skip

    copies = {str(Path(rec["file"]).relative_to(tmp_path)) + f"@{rec['frame']}": rec["annotated"]
              for rec in _lines(tmp_path / "o.jsonl")}  # fmt: skip
    expected = {
        "photos/a.jpg@None": "a.jpg",
        "photos/b.png@None": "b.png",
        "photos/clip.avi@0": "clip_f000000.jpg",
        "photos/clip.avi@2": "clip_f000002.jpg",
        "photos/trip/a.jpg@None": "trip/a.jpg",
        "x/photo.webp@None": "photo-x.webp",
        "y/photo.webp@None": "photo-y.webp",
    }
    assert copies == {k: str(annotated / v) for k, v in expected.items()}
    formats = {
        "a.jpg": "JPEG",
        "b.png": "PNG",
        "clip_f000000.jpg": "JPEG",
        "trip/a.jpg": "JPEG",
        "photo-x.webp": "WEBP",
    }
    for name, fmt in formats.items():
        with Image.open(annotated / name) as copy:
            assert (copy.format, copy.size) == (fmt, (350, 350)), name
    assert sorted(str(p.relative_to(annotated)) for p in annotated.rglob("*.*")) == sorted(expected.values())


def test_labels_and_lines_follow_the_image_size_readable_on_350_px_and_on_6000x4000(astronaut):
    small = cv2.resize(astronaut, (350, 350), interpolation=cv2.INTER_AREA)
    big = cv2.resize(astronaut, (6000, 4000), interpolation=cv2.INTER_LINEAR)
    face = {"label": "happiness", "score": 0.83}

    drawn_small = draw_faces(small, [{**face, "box": [120, 45, 66, 66]}])
    drawn_big = draw_faces(big, [{**face, "box": [2070, 520, 1110, 740]}])

    assert drawn_small.shape == (350, 350, 3) and drawn_big.shape == (1365, 2048, 3)
    # the box's left edge: 2 px on the 350 px photo (it was 1 px), 5 px on the 2048 px copy
    assert _green(drawn_small[100, 118:124]).tolist() == [False, False, True, True, False, False]
    x = round(2070 * 2048 / 6000)
    assert _green(drawn_big[300, x - 1 : x + 7]).tolist() == [False] + [True] * 5 + [False, False]
    # the label: a green band above the box, as tall as a 13 px font and more on the big copy, with black text in it
    band_small = int(_green(drawn_small[:45, 121]).sum())  # in the label's left padding, above the box
    band_big = int(_green(drawn_big[: round(520 * 2048 / 6000), x + 1]).sum())
    assert 15 <= band_small <= 25 and band_big >= 45, (band_small, band_big)
    assert (drawn_small[30:45, 120:186].max(axis=-1) < 60).sum() > 40  # black text pixels
    assert label_style(350, 350, 66) == (13, 2) and label_style(1365, 2048, 379) == (49, 5)
    assert label_style(1536, 2048, 61)[0] == 24  # a crowd's small faces: 1/64 of the side, not 1/28


def test_copy_names_add_parent_folders_only_on_a_real_clash():
    inputs = [
        (Path("/p/x/photo.jpg"), PurePath("photo.jpg"), False),
        (Path("/p/y/photo.jpg"), PurePath("photo.jpg"), False),
        (Path("/p/y/photo.jpg"), PurePath("photo.jpg"), False),  # the same file twice: one copy
        (Path("/q/a/sub/b.png"), PurePath("sub/b.png"), False),  # two folders given with the same subfolder
        (Path("/q/c/sub/B.PNG"), PurePath("sub/B.PNG"), False),  # differs by case only: a clash on macOS
        (Path("/r/clip.mp4"), PurePath("clip.mp4"), True),  # same folder, same stem: the suffix tells them apart
        (Path("/r/clip.avi"), PurePath("clip.avi"), True),
        (Path("/r/clip.jpg"), PurePath("clip.jpg"), False),  # an image beside those videos: no clash
        (Path("/r/scan.xyz"), PurePath("scan.xyz"), False),
    ]

    bases = copy_bases(inputs)

    names = [str(copy_name(bases[path], name, 0 if video else None)) for path, name, video in inputs]
    assert names == [
        "photo-x.jpg",
        "photo-y.jpg",
        "photo-y.jpg",
        "sub/b-sub-a.png",
        "sub/B-sub-c.PNG",
        "clip-mp4_f000000.jpg",
        "clip-avi_f000000.jpg",
        "clip.jpg",
        "scan.xyz.png",  # a format Pillow cannot write: PNG, the name kept
    ]
    assert copy_format("a.JPEG") == ("JPEG", ".JPEG") and copy_format("a.tif") == ("TIFF", ".tif")
    assert copy_format("noext") == ("PNG", ".png")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--min_face_fraction", "1.5"], "--min_face_fraction must be in [0, 1) (0: no minimum), got 1.5"),
        (["--detect_max_side", "-1"], "--detect_max_side must be >= 0 (0: the full size), got -1"),
        (["--min_face_size", "0"], "--min_face_size must be positive, got 0"),
    ],
    ids=["fraction", "max_side", "min_size"],
)
def test_bad_detection_flags_are_one_line_usage_errors_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["photo.jpg", *flags])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"fer-predict: error: {message}"
