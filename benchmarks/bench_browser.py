"""The dashboard as a user meets it, measured in a real browser.

    python -m benchmarks.bench_browser [--uploads 100]

Prints: `streamlit run` to an interactive first page; from a file landing in the
uploader to its Grad-CAM overlay on screen (median and p90 over distinct test
scans); the server's resident memory after the model loaded and after every
upload, to show whether it stays flat. Needs Debian's chromium (`make browser`).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from model.core.dataset import load_split
from model.reports.record import png_bytes
from tests.dashboard.live import browser_page, streamlit_server, upload_through_chooser, wait_idle


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(page, url: str, proc, healthy: float, t0: float, files: list[Path]) -> None:
    page.goto(url)
    page.get_by_text("Classify a scan").first.wait_for(timeout=120_000)
    wait_idle(page, timeout=120_000)
    first_page = time.perf_counter() - t0
    print(f"streamlit run -> healthy {healthy:.2f} s, -> interactive first page {first_page:.2f} s (target 5 s)")
    upload_through_chooser(page, files[0])
    page.get_by_text("Predicted stage").wait_for(timeout=120_000)
    wait_idle(page)
    rss = [rss_mb(proc.pid)]
    print(f"server RSS with the model loaded and one scan classified: {rss[0]:.0f} MB")
    latencies = []
    uploader = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    for path in files[1:]:
        before = page.locator("[data-testid='stImage'] img").nth(1).get_attribute("src")
        t = time.perf_counter()
        uploader.set_input_files(str(path))
        page.wait_for_function(
            """(before) => {
                const imgs = document.querySelectorAll("[data-testid='stImage'] img");
                return imgs.length === 2 && imgs[1].complete && imgs[1].naturalWidth > 0 && imgs[1].src !== before;
            }""", arg=before, timeout=60_000)
        latencies.append(time.perf_counter() - t)
        wait_idle(page)
        rss.append(rss_mb(proc.pid))
    lat = sorted(latencies)
    print(f"upload -> overlay on screen over {len(lat)} scans: median {statistics.median(lat) * 1000:.0f} ms, "
          f"p90 {lat[int(0.9 * (len(lat) - 1))] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms (target median 1 s)")
    tenth = max(1, len(rss) // 10)
    print(f"server RSS: after first {rss[0]:.0f} MB, after {tenth} uploads {rss[tenth]:.0f} MB, "
          f"after {len(rss) - 1} uploads {rss[-1]:.0f} MB (max {max(rss):.0f} MB; target < 1,500 MB and flat)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=100, help="distinct scans to upload (default: 100)")
    args = parser.parse_args()
    test = load_split("test", limit=args.uploads)
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i in range(len(test)):
        path = tmp / f"scan_{i:03d}.png"
        path.write_bytes(png_bytes(test.images[i, 0].numpy()))
        files.append(path)

    with browser_page() as page:  # the browser starts first: its launch is not the app's start-up
        t0 = time.perf_counter()
        with streamlit_server() as (url, proc, healthy):
            measure(page, url, proc, healthy, t0, files)


if __name__ == "__main__":
    main()
