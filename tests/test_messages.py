"""Messages that say what is wrong (issue 28): an empty folder, a missing file, and a ``--data_dir`` holding this
project's packed FER+ instead of a layout the builders read."""

import json

import numpy as np
import pytest
from PIL import Image

from modeling.cli import UserError
from modeling.data import DatasetLayoutError, load_fer_dataset
from modeling.inference.fer_predict import main as fer_predict
from modeling.inference.media import IMAGE_EXTENSIONS
from tests.tiny_classifier import save_tiny_classifier


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny_fer"))


def test_an_empty_folder_says_it_holds_no_images_and_which_extensions_are_read(tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("not a photo")
    assert fer_predict([str(folder)]) == 2  # before the model loads
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fer-predict: error: nothing to read: {folder}: the folder holds no images or videos (")
    assert all(ext in line for ext in IMAGE_EXTENSIONS) and ".mp4" in line and "in subfolders too" in line


def test_a_missing_file_is_no_such_file_not_an_unreadable_image(tiny_dir, tmp_path, capsys):
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(tmp_path / "face.png")
    missing = tmp_path / "missing.jpg"
    argv = [str(tmp_path / "face.png"), str(missing), "--no_detect", "--no_progress", "--model", str(tiny_dir)]
    assert fer_predict(argv) == 0
    captured = capsys.readouterr()
    face, gone = [json.loads(line) for line in captured.out.splitlines()]
    assert "label" in face and gone == {"file": str(missing), "frame": None, "error": "no such file"}
    assert "files=2, read=1, missing=1, unreadable=0" in captured.err


def test_only_missing_files_stop_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "photo.jpg"
    assert fer_predict([str(missing)]) == 2
    assert capsys.readouterr().err == f"fer-predict: error: nothing to read: {missing}: no such file\n"


def test_an_empty_folder_beside_other_inputs_is_named_and_the_run_goes_on(tiny_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(tmp_path / "face.png")
    argv = [str(tmp_path / "empty"), str(tmp_path / "face.png"), "--no_detect", "--model", str(tiny_dir)]
    assert fer_predict(argv) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    assert (
        f"fer-predict: {tmp_path / 'empty'}: the folder holds no images or videos (fer-predict reads" in captured.err
    )


@pytest.mark.parametrize("dataset", ["ferplus", "rafdb", "affectnet", "imagefolder"])
def test_a_data_dir_holding_the_packed_ferplus_names_the_converter(dataset, tmp_path):
    packed = tmp_path / "ferplus"
    packed.mkdir()
    for split in ("train", "valid", "test"):
        np.savez(packed / f"{split}_images.npz", images=np.zeros((1, 48, 48), np.uint8), names=["fer0000000.png"])
    with pytest.raises(DatasetLayoutError) as raised:
        load_fer_dataset(dataset, packed, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert (
        f"{packed} holds this project's packed FER+ (test_images.npz, train_images.npz, valid_images.npz)" in message
    )
    assert f"`python -m modeling.data.ferplus_layout {packed} DEST`, then pass --data_dir DEST" in message


def test_a_layout_error_without_packed_files_has_no_converter_hint(tmp_path):
    with pytest.raises(DatasetLayoutError) as raised:
        load_fer_dataset("ferplus", tmp_path, cache_dir=tmp_path / "cache")
    assert "ferplus_layout" not in str(raised.value) and "no FER+ data found" in str(raised.value)


def test_an_image_folder_without_images_is_a_layout_error_not_a_traceback(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "readme.txt").write_text("no faces yet")
    with pytest.raises(DatasetLayoutError, match=r"^no image found under \S+faces\nExpected imagefolder layout"):
        load_fer_dataset("imagefolder", tmp_path / "faces", cache_dir=tmp_path / "cache")
    assert issubclass(DatasetLayoutError, UserError)  # one line from the commands
