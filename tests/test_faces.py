import cv2
import numpy as np
import pytest

from modeling.inference.faces import (
    FaceDetector,
    HaarFaceDetector,
    box_to_original,
    crop_face,
    expand_box,
    iou,
    shrink_for_detection,
    smallest_face,
)

UPSCALED = 112  # FER+ faces are 48 px; the cascade's 30 px minimum and photos want larger faces


def _first_detectable_face(images, detector):
    """The first FER+ face (upscaled) in which the cascade finds a face: a deterministic pick."""
    for index, image in enumerate(images):
        face = cv2.resize(image, (UPSCALED, UPSCALED), interpolation=cv2.INTER_CUBIC)
        if detector.detect(face):
            return index, face
    pytest.fail("The Haar cascade detected no face in any upscaled FER+ image")


def test_a_real_face_pasted_on_a_noisy_canvas_is_found_where_it_was_put(ferplus_faces):
    images, names = ferplus_faces
    detector = HaarFaceDetector()
    index, face = _first_detectable_face(images, detector)
    rng = np.random.default_rng(0)
    canvas = np.clip(rng.normal(128, 12, size=(320, 400)), 0, 255).astype(np.uint8)
    x, y = 150, 90
    canvas[y : y + UPSCALED, x : x + UPSCALED] = face
    rgb = np.repeat(canvas[:, :, None], 3, axis=2)

    boxes = detector.detect(rgb)

    assert len(boxes) == 1, f"{names[index]}: expected one face, got {boxes}"
    assert iou(boxes[0], (x, y, UPSCALED, UPSCALED)) > 0.5, (names[index], boxes)


@pytest.mark.parametrize("kind", ["uniform", "noise"])
def test_an_image_without_a_face_reports_no_box(kind):
    rng = np.random.default_rng(1)
    image = (
        np.full((240, 320, 3), 128, np.uint8) if kind == "uniform" else rng.integers(0, 256, (240, 320, 3), np.uint8)
    )
    assert HaarFaceDetector().detect(image) == []


def test_crop_face_adds_the_margin_and_clips_to_the_image():
    image = np.arange(100 * 80, dtype=np.uint32).reshape(100, 80).astype(np.uint8)
    assert crop_face(image, (20, 30, 40, 40), margin=0.25).shape == (60, 60)
    assert crop_face(image, (0, 0, 40, 40), margin=0.5).shape == (60, 60)  # clipped at the top-left corner
    assert expand_box((70, 90, 20, 20), 0.5, width=80, height=100) == (60, 80, 20, 20)
    with pytest.raises(ValueError, match="margin"):
        crop_face(image, (0, 0, 10, 10), margin=-0.1)


def test_a_custom_detector_plugs_in_through_the_interface():
    class Fixed(FaceDetector):
        def detect(self, image):
            return [(1, 2, 3, 4)]

    assert Fixed()(np.zeros((8, 8), np.uint8)) == [(1, 2, 3, 4)]


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


# --- large photos: the cascade searches a copy of at most DETECT_MAX_SIDE px, faces of at least 1/16 of the image ---


def astronaut(side: int | None = None) -> np.ndarray:
    """scikit-image's astronaut (NASA's portrait of Eileen Collins, 512x512 RGB), resized to ``side`` (cv2 cubic)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) provides the astronaut photo")
    image = data.astronaut()
    return image if side is None else cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)


ASTRONAUT_FACE = (177, 66, 95, 95)  # the cascade's box at 512 px


def crowd(face: int, rows: int, cols: int, height: int = 3000, width: int = 4000) -> tuple[np.ndarray, list]:
    """A ``height`` x ``width`` group photo: the astronaut's head, scaled so that her face is ``face`` px, tiled
    ``rows`` x ``cols`` on a noisy canvas; with the faces' boxes (where her 512 px box lands in each tile)."""
    x, y, w, _ = ASTRONAUT_FACE
    head = astronaut()[20:300, 110:340]  # the face with hair, neck and some background: 230x280 px
    s = face / w
    tile = cv2.resize(head, (round(230 * s), round(280 * s)), interpolation=cv2.INTER_AREA)
    canvas = np.clip(np.random.default_rng(0).normal(128, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    th, tw = tile.shape[:2]
    boxes = []
    for r in range(rows):
        for c in range(cols):
            top, left = round((r + 0.5) * height / rows - th / 2), round((c + 0.5) * width / cols - tw / 2)
            canvas[top : top + th, left : left + tw] = tile
            boxes.append((left + round((x - 110) * s), top + round((y - 20) * s), face, face))
    return canvas, boxes


def test_the_astronaut_upscaled_to_4000_px_gives_her_one_face_not_the_spacesuit_and_the_rocket():
    big = astronaut(4000)  # at full size the cascade found 7 faces here: badge, helmet, rocket, ...

    boxes = HaarFaceDetector().detect(big)

    assert len(boxes) == 1, boxes
    expected = tuple(round(v * 4000 / 512) for v in ASTRONAUT_FACE)
    assert iou(boxes[0], expected) > 0.8, (boxes, expected)


def test_the_small_photos_of_bench_photos_still_give_one_face_each():
    from matplotlib import cbook
    from PIL import Image

    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))  # 512x600
    detector = HaarFaceDetector()
    assert detector.detect(astronaut()) == [ASTRONAUT_FACE]
    assert len(detector.detect(astronaut(350))) == 1
    assert len(detector.detect(hopper)) == 1


def test_a_group_photo_keeps_every_face_of_a_sixteenth_of_its_height_and_a_crowd_needs_min_fraction_0():
    group, truth = crowd(face=300, rows=3, cols=4)  # 12 faces of 10% of the 3000 px side
    found = HaarFaceDetector().detect(group)
    assert len(found) == 12 and all(max(iou(t, b) for b in found) > 0.7 for t in truth), found

    # 32 faces of 4% of the side: under the default minimum (1/16 = 187 px), the documented limit; found without it,
    # on the 1024 px copy, where they measure 31 px
    packed, truth = crowd(face=120, rows=4, cols=8)
    assert HaarFaceDetector().detect(packed) == []
    found = HaarFaceDetector(min_fraction=0).detect(packed)
    assert len(found) == 32 and all(max(iou(t, b) for b in found) > 0.7 for t in truth), found


def test_the_cascade_searches_a_copy_of_at_most_max_side_and_boxes_come_back_in_the_images_pixels():
    image = np.zeros((3000, 4000, 3), np.uint8)
    small, sx, sy = shrink_for_detection(image, 1024)
    assert small.shape == (768, 1024, 3) and (sx, sy) == (0.256, 0.256)
    assert box_to_original((100, 50, 64, 64), sx, sy, 4000, 3000) == (391, 195, 250, 250)
    assert box_to_original((1000, 700, 64, 68), sx, sy, 4000, 3000) == (3906, 2734, 94, 266)  # clipped at the edges
    kept = np.zeros((300, 200), np.uint8)
    assert shrink_for_detection(kept, 1024) == (kept, 1.0, 1.0)
    assert shrink_for_detection(image, None)[0] is image
    assert smallest_face(3000, 4000, (30, 30), 1 / 16) == (188, 188)
    assert smallest_face(350, 350, (30, 30), 1 / 16) == (30, 30)  # the pixel minimum rules small photos

    # the same face, found at full size and through the copy
    big = astronaut(2000)
    full = HaarFaceDetector(max_side=None).detect(big)
    assert iou(HaarFaceDetector().detect(big)[0], full[0]) > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_side": 0}, "max_side"), ({"min_fraction": 1.0}, "min_fraction"), ({"min_fraction": -0.1}, "min_fraction")],
)
def test_bad_detector_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HaarFaceDetector(**kwargs)


def test_one_detector_searched_by_several_threads_at_once_finds_each_photos_boxes_as_alone():
    from concurrent.futures import ThreadPoolExecutor

    from skimage import data

    astronaut = data.astronaut()
    photos = [cv2.resize(astronaut, (side, side)) for side in (512, 700, 900, 1024)]
    detector = HaarFaceDetector()
    alone = [detector.detect(photo) for photo in photos]
    assert all(len(boxes) == 1 for boxes in alone)

    # a shared CascadeClassifier gave wrong boxes for a third of these calls and failed some (bench/demo_load.py)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(detector.detect, photos * 8))

    assert found == alone * 8
    with ThreadPoolExecutor(1) as pool:  # a thread of its own gets a cascade of its own
        assert pool.submit(lambda: detector.cascade).result() is not detector.cascade
