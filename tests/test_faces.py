import cv2
import numpy as np
import pytest

from modeling.inference.faces import FaceDetector, HaarFaceDetector, crop_face, expand_box, iou

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
