"""The docs' screenshots: the quick study's index.html and one agent's attack report, rendered by the system's
headless Chromium with the browser test's own code (tests/browser.py), into docs/img/index.png and
docs/img/report.png.

    nice -n 5 .venv/bin/python scripts/screenshots.py          # runs `rllab lab --quick --out runs/lab-quick`
                                                                # first (about 2 minutes; seconds when cached)
    nice -n 5 .venv/bin/python scripts/screenshots.py --fresh  # every stage rerun: the saliency maps and
                                                                # reports of the current code, not the cache's

The study is rerun first (every stage cached after the first time) so index.html is the current code's, and
the chosen report is rewritten from its results.json for the same reason. Each page is checked as the test
checks it (no console error, no failed or outside request, every plot, table and thumbnail visible); a
problem stops the script. The PNGs are cut at --max-height CSS pixels and reduced to 256 colours, so each
stays a few hundred KB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rllab.cli import main as rllab_main  # noqa: E402
from robustness.report import write_report  # noqa: E402
from tests.browser import INDEX_PARTS, REPORT_PARTS, chromium_or_reason, inspect_page, open_browser  # noqa: E402


def shrink(path: Path) -> int:
    """Rewrite the PNG with a 256-colour palette (text and flat plots lose nothing visible); its new size."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path.stat().st_size


def shoot(browser, page: Path, parts: dict[str, str], out: Path, width: int, max_height: int) -> None:
    """One checked screenshot of ``page`` into ``out``."""
    check = inspect_page(browser, page.resolve().as_uri(), parts, width=width, screenshot=out, max_height=max_height)
    trouble = check.problems + [f"invisible: {p}" for p in check.invisible()]
    if check.scroll_width > check.client_width:
        trouble.append(f"scrolls sideways: {check.scroll_width} px of content in a {check.client_width} px window")
    if trouble:
        raise SystemExit(f"{page}: " + "; ".join(trouble))
    print(f"{out.relative_to(ROOT)}: {shrink(out) / 1024:.0f} KiB ({page})")


def run() -> None:
    """Parse the options, refresh the pages, take both screenshots."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default=str(ROOT / "runs" / "lab-quick"), help="the study folder (--quick study)")
    ap.add_argument("--agent", default="CartPole-v1-ppo-s0-smoothed", help="the agent whose report is shown")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="where index.png and report.png go")
    ap.add_argument("--width", type=int, default=1100, help="window width in CSS pixels")
    ap.add_argument("--max-height", type=int, default=2200, help="cut each screenshot at this height")
    ap.add_argument("--fresh", action="store_true", help="rerun every stage (after a code change that alters them)")
    args = ap.parse_args()
    chromium, reason = chromium_or_reason()
    if chromium is None:
        raise SystemExit(f"no browser: {reason}")
    study, out = Path(args.study), Path(args.out)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if rllab_main(["lab", "--quick", "--out", str(study), *(["--fresh"] if args.fresh else [])]) != 0:
        raise SystemExit("rllab lab --quick failed")
    attack = study / "agents" / args.agent / "attacks" / "lab"
    write_report(json.loads((attack / "results.json").read_text()), attack)
    with open_browser(chromium) as browser:
        shoot(browser, study / "index.html", INDEX_PARTS, out / "index.png", args.width, args.max_height)
        shoot(browser, attack / "report.html", REPORT_PARTS, out / "report.png", args.width, args.max_height)


if __name__ == "__main__":
    run()
