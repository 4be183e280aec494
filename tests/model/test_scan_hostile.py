"""Every file of the hostile corpus through `open_upload`, the function the Classify page and the CLI call."""
import warnings

import numpy as np
import pytest
from PIL import Image

from model.scans.scan_io import Scan, ScanError, clean_name, open_upload
from tests.model.hostile import MESSAGE_FRAGMENTS, encoded, head, hostile_corpus

CORPUS = hostile_corpus()
REFERENCE = encoded(head(), "PNG")


@pytest.fixture(scope="module")
def reference_slice() -> np.ndarray:
    return open_upload([("reference.png", REFERENCE)]).image


def test_the_corpus_is_large_and_covers_both_outcomes():
    kinds = [kind for kind, *_ in CORPUS]
    assert len(CORPUS) >= 30 and len(set(kinds)) == len(kinds)
    assert {expected for *_, expected in CORPUS} == {"ok", "error"}
    assert set(MESSAGE_FRAGMENTS) <= set(kinds)


@pytest.mark.parametrize("kind, filename, data, expected", CORPUS, ids=[kind for kind, *_ in CORPUS])
def test_hostile_file(kind, filename, data, expected, reference_slice):
    pixel_limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    name = clean_name(filename)
    if expected == "ok":
        scan = open_upload([(filename, data)])
        assert isinstance(scan, Scan) and scan.name == name
        assert scan.image.dtype == np.uint8 and scan.image.shape == (128, 128)
        assert scan.image.max() > scan.image.min()  # something to see
        assert 0 <= scan.slice_index < scan.n_slices and 0.0 <= scan.colour <= 1.0
        assert scan.steps and all(isinstance(step, str) and step for step in scan.steps)
    else:
        with pytest.raises(ScanError) as caught:
            open_upload([(filename, data)])
        message = str(caught.value)
        assert message.startswith(f"{name}: ") and len(message) > len(name) + 10
        assert "Traceback" not in message and 'File "' not in message and "\n" not in message
        assert MESSAGE_FRAGMENTS.get(kind, "") in message
    # nothing global was changed, and a good slice still decodes exactly as before
    assert Image.MAX_IMAGE_PIXELS == pixel_limit and warnings.filters == filters
    assert np.array_equal(open_upload([("reference.png", REFERENCE)]).image, reference_slice)


def test_file_names_are_cleaned_in_messages_and_scans():
    png = {kind: data for kind, _, data, _ in CORPUS}["valid PNG"]
    assert open_upload([("../../a/b\\c\x00d.png", png)]).name == "cd.png"
    with pytest.raises(ScanError, match=r"^cd\.png: the file is empty$"):
        open_upload([("../../a/b\\c\x00d.png", b"")])
