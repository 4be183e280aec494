"""The first page is drawn without the model's modules, which load on a thread meanwhile (issue 20 item 5)."""
import json
import subprocess
import sys
import textwrap

from tests.dashboard.live import ROOT

FIRST_RUN = textwrap.dedent("""
    import json, os, sys
    from streamlit.testing.v1 import AppTest
    os.environ["ALZ_MRI_NO_WARMUP"] = sys.argv[1]
    at = AppTest.from_file(sys.argv[2], default_timeout=120).run()
    print(json.dumps({"torch": "torch" in sys.modules, "exceptions": [e.value for e in at.exception],
                      "title": [t.value for t in at.title], "uploader": len(at.get("file_uploader")),
                      "sidebar": [c.value for c in at.sidebar.caption]}))
""")


def first_run(no_warmup: str) -> dict:
    """The first run of the app in a fresh process, as a cold server runs it."""
    out = subprocess.run([sys.executable, "-c", FIRST_RUN, no_warmup, str(ROOT / "dashboard" / "app.py")],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_first_page_needs_no_torch_and_offers_the_uploader():
    first = first_run("1")  # no warm-up thread: nothing else imports the model's modules behind the page's back
    assert first["exceptions"] == []
    assert first["torch"] is False
    assert first["title"] == ["Classify a scan"] and first["uploader"] == 1
    assert any(c.startswith("ResNet-34 · `") for c in first["sidebar"])  # the model named from its config
    assert "The model loads with the first scan." in first["sidebar"]


def test_with_the_warm_up_the_model_loads_behind_the_first_page():
    first = first_run("0")
    assert first["exceptions"] == [] and first["uploader"] == 1
    assert any(c in ("Loading and verifying the model…",) or c.startswith("Running on") for c in first["sidebar"])
