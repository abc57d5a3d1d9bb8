"""How big a ``reactlab report`` page is and how fast headless Chromium opens and drives it.

For each case: the page's size, the time ``build_report`` took, first contentful paint and the time
until the viewer is ready (its script has parsed the data and listed the first page), then the time
to apply a filter and to open an episode. Cases: the run directories given (e.g. the demo's two
arms, a 491-question run), and a synthetic run of ``--episodes`` episodes (the first run's
trajectories repeated under new ids) for the 10,000-episode target.

    .venv/bin/python bench/report_open.py runs/demo/baseline runs/demo/finetuned --also runs/oracle-eval
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from reactlab.hardware import describe_cpu
from reactlab.viewer import build_report


def synthetic(run: Path, episodes: int, out: Path) -> Path:
    """``run``'s trajectories repeated (ids suffixed) until there are ``episodes`` of them."""
    lines = (run / "trajectories.jsonl").read_text().splitlines()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trajectories.jsonl", "w") as f:
        for k in range(episodes):
            rec = json.loads(lines[k % len(lines)])
            rec["id"] = f"{rec['id']}-{k // len(lines)}"
            f.write(json.dumps(rec) + "\n")
    if (run / "run.json").exists():
        shutil.copy(run / "run.json", out / "run.json")
    return out


def measure(page_path: Path, browser) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.perf_counter()
    page.goto(page_path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
    ready = time.perf_counter() - t0
    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
    t1 = time.perf_counter()
    page.select_option("#f-correct", "0")
    page.wait_for_function("document.getElementById('count').textContent.length > 0")
    filt = time.perf_counter() - t1
    page.select_option("#f-correct", "")
    t2 = time.perf_counter()
    page.click("#list tbody tr >> nth=0")
    page.wait_for_selector("#episode .cols")
    opened = time.perf_counter() - t2
    page.close()
    return {"fcp_ms": fcp, "ready_s": ready, "filter_s": filt, "open_s": opened}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories for the first page")
    ap.add_argument("--also", nargs="*", type=Path, default=[], help="more single-run pages")
    ap.add_argument("--episodes", type=int, default=10_000, help="episodes of the synthetic page")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    cases = [(" + ".join(p.name for p in args.runs), list(args.runs))]
    cases += [(p.name, [p]) for p in args.also]
    cases.append((f"synthetic {args.episodes:,} episodes",
                   [synthetic(args.runs[0], args.episodes, tmp / f"synthetic-{args.episodes}")]))
    print(f"CPU: {describe_cpu()}; Chromium: {args.chromium} (headless)")
    print("| page | episodes | size | build | first paint | viewer ready | filter | open episode |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for k, (name, runs) in enumerate(cases):
            t0 = time.perf_counter()
            page_path = build_report(runs, tmp / f"page{k}.html")
            build = time.perf_counter() - t0
            n = sum(sum(1 for line in (r / "trajectories.jsonl").open() if line.strip()) for r in runs)
            m = measure(page_path, browser)
            print(f"| {name} | {n:,} | {page_path.stat().st_size / 1e6:.1f} MB | {build:.2f} s | {m['fcp_ms']:.0f} ms "
                  f"| {m['ready_s']:.2f} s | {m['filter_s'] * 1000:.0f} ms | {m['open_s'] * 1000:.0f} ms |")
        browser.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
