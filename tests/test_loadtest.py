"""The load test: its load is the course's shop at scale, its report says what happened.

The slow test runs `python -m coursekit.loadtest --short` for real (a private
native copy of G4 with the reference solution, `--dags-dir`, real generators, real Airflow)
and reads the report it wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coursekit.docs import facts
from coursekit.generator.config import ShopConfig, check_config
from coursekit.grade import REPO_ROOT, Grade
from coursekit.loadtest.__main__ import bound, parse_args
from coursekit.loadtest.breakdown import TaskTiming, analyse
from coursekit.loadtest.ceiling import Ceiling
from coursekit.loadtest.figures import KEYS, read_figures, started
from coursekit.loadtest.load import scaled_config
from coursekit.loadtest.measure import ResourceSample
from coursekit.loadtest.report import Phase, Run, best_phase, write

G4 = Grade.named("G4_Senior")


def test_a_rate_scales_every_table_like_the_shop_and_updates_60_percent():
    base = json.loads(G4.generator_config.read_text())
    scaled = scaled_config(base, 140)
    inserts = {name: spec["insert_rows_per_tick"] for name, spec in scaled["tables"].items()}
    assert inserts == {"customers": 30, "products": 10, "orders": 100}  # 3 : 1 : 10, like the config
    for spec in scaled["tables"].values():
        assert spec["update_rows_per_tick"] == round(0.6 * spec["insert_rows_per_tick"])
    assert scaled["tables"]["orders"]["columns"] == base["tables"]["orders"]["columns"], "bad values and late refs kept"
    assert check_config(ShopConfig.model_validate(scaled), "en_US") == []


def test_the_default_ramp_fits_30_minutes_and_short_is_for_ci():
    default = parse_args([])
    assert default.rates == [250, 500, 1000, 2000, 4000, 8000], "well past the 1000/s that kept up before"
    assert len(default.rates) * default.step_seconds + default.drain + 90 + 60 <= 30 * 60
    assert "= 28 min" in bound(default) and "ceiling 90 s" in bound(default)
    short = parse_args(["--short"])
    assert len(short.rates) * short.step_seconds <= 120 and len(short.rates) == 2
    assert parse_args(["--latency-target", "120"]).latency_target == 120
    with pytest.raises(SystemExit):
        parse_args(["--rates", "300,100"])


def test_the_report_names_the_highest_rate_that_keeps_up(tmp_path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    phases = [
        Phase(100, start, start + timedelta(minutes=2), 24_000, 38_000, 23_900, 40, 80, 120),
        Phase(300, start + timedelta(minutes=2), start + timedelta(minutes=4), 72_000, 110_000, 71_000, 60, 200, 260),
        Phase(900, start + timedelta(minutes=4), start + timedelta(minutes=6), 150_000, 150_000, 90_000, 200, 420, 500),
    ]
    assert best_phase(phases).rate == 300, "900/s: p95 over 5 minutes and many keys not landed"
    samples = [
        ResourceSample(s * 5.0, {"airflow": 1.2, "postgres": 0.4}, {"airflow": 900, "postgres": 300}) for s in range(10)
    ]
    series = {
        "landed": [(start + timedelta(seconds=30 * i), 1000 + i) for i in range(12)],
        "latency": [(start + timedelta(seconds=30 * i), 10, 50.0, 90.0, 120.0) for i in range(12)],
    }
    # One run in the 900/s step: orders' publish is the slowest part of its critical path.
    t0 = start + timedelta(minutes=4, seconds=10)
    tasks = [
        TaskTiming("orders.extract_new_york", t0, t0 + timedelta(seconds=2), t0 + timedelta(seconds=20)),
        TaskTiming(
            "orders.load_stg", t0 + timedelta(seconds=21), t0 + timedelta(seconds=22), t0 + timedelta(seconds=30)
        ),
        TaskTiming(
            "orders.publish", t0 + timedelta(seconds=31), t0 + timedelta(seconds=31), t0 + timedelta(seconds=90)
        ),
    ]
    upstreams = {"orders.load_stg": ["orders.extract_new_york"], "orders.publish": ["orders.load_stg"]}
    runs = [analyse("load", "r1", t0, t0 + timedelta(seconds=92), tasks, upstreams)]
    # With no pipeline the generators managed 1,200/s per shop: 300/s is a quarter of that.
    top = Ceiling(asked=1800, seconds=60.0, rows=144_000, shops=2, copy_out_sec=0.5, copy_in_sec=1.5)
    run = Run(
        "G4_Senior", "test", start, {"cpu cores (logical)": "2"}, {}, phases, series, samples, [], 30.0, runs=runs
    )
    run.ceiling = top
    report = write(run, tmp_path / "report")
    text = report.read_text()
    assert "**300 inserts/s per shop**" in text and "550,000 rows landed per 10 minutes" in text
    assert "First rate that did not keep up: **900 inserts/s per shop**. Why: latency: p95 420 s" in text
    assert "Bottleneck in that step: publish takes 64% of a run's 92 s; orders.publish is the slowest" in text
    assert "| 900 | 1 | 92.0 | - | 18.0 | 8.0 | 0.0 | 59.0 | 0.0 | 3.0 | 4.0 |" in text, "sums to 92 s"
    assert "the load generators sustained 1,200 inserts/s per shop (asked for 1,800" in text
    assert "at 72,000 rows/s (0.5 s out, 1.5 s in)" in text and "kept up is 25% of what the generators" in text
    assert "their own limit is higher" not in text, "1,200 of 1,800 asked: that is their limit"
    run.ceiling = Ceiling(asked=1800, seconds=60.0, rows=216_000, shops=2, copy_out_sec=0.5, copy_in_sec=1.5)
    text = write(run, tmp_path / "all-asked").read_text()
    assert "did all they were asked for, so their own limit is higher still" in text
    assert "kept up is at most 17% of what the generators" in text
    for plot in ("throughput.png", "latency.png", "backlog.png", "breakdown.png", "resources.png"):
        assert (tmp_path / "report" / plot).stat().st_size > 10_000
        assert f"![{plot}]({plot})" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_short_load_test_writes_a_report_and_leaves_the_wap_invariants_holding(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.loadtest", "--short", "--report-dir", str(tmp_path)]
        + ["--dags-dir", str(G4.path / "solution" / "dags")],  # the reference (make loadtest SOLUTION=1)
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = tmp_path.glob("*/report.md")
    text = report.read_text()
    rows = re.findall(r"^\| (\d+) \| \d+ \| [\d,]+ \| ([\d,]+) \| ([\d,]+) of ([\d,]+) \|", text, re.MULTILINE)
    assert [row[0] for row in rows] == ["20", "60"]
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    # A 40-second phase may end before the first run lands anything; its rows land later.
    assert sum(number(landed) for _, landed, _, _ in rows) > 0, "rows landed in dds"
    assert all(number(keys) > 0.8 * number(made) for _, _, keys, made in rows), "each phase's new rows arrived"
    assert "cpu cores (logical)" in text and "memory:" in text
    failed = [line for line in text.splitlines() if line.startswith("- FAIL")]
    # Everything the G4 checker checks holds after the load; a release needs a late parent to
    # arrive between two runs, which a 80-second test may not see.
    assert all("quarantine rows were released" in line for line in failed), failed
    assert "published or quarantined (ok" in text
    for plot in ("throughput.png", "latency.png", "backlog.png", "breakdown.png", "resources.png"):
        assert Path(report.parent, plot).stat().st_size > 0
    # The ramp says where it stopped and why, or that 60/s was not the knee.
    stop = re.search(r"First rate that did not keep up: \*\*(\d+) inserts/s per shop\*\*\. Why: (.+)\.", text)
    assert stop or "The ramp did not reach the knee within the steps" in text
    assert stop is None or stop[2].strip(), "a failing step says why"
    # Where the time goes: every run's critical path adds up to its duration, nothing is negative.
    critical = re.findall(
        r"^\| (\d+|drain) \| (\d+) \| ([\d.]+) \| ([\d.]+|-) \|((?: [\d.]+ \|){7})$", text, re.MULTILINE
    )
    assert critical, "the breakdown table has a row per step with runs"
    for _label, runs, duration, _every, parts in critical:
        seconds = [float(v) for v in parts.split("|") if v.strip()]
        assert int(runs) > 0 and all(v >= 0 for v in seconds)
        assert abs(sum(seconds) - float(duration)) < 0.6, (duration, seconds)
        assert 0 < float(duration) < 600
    work = re.findall(r"^\| (?:\d+|drain) \|((?: [\d.]+ \|){7}) \w+\.\w+ \(", text, re.MULTILINE)
    assert work and all(float(v) >= 0 for row in work for v in row.split("|") if v.strip())
    assert len(Path(report.parent, "backlog.csv").read_text().splitlines()) > 10
    # The machine's own ceiling beside the knee: generators alone, then raw COPY of the same rows.
    top = re.search(
        r"the load generators sustained ([\d,]+) inserts/s per shop \(asked for 120, ([\d,]+) rows in \d+ s\); "
        r"raw COPY moved the same rows from the shops into the warehouse at ([\d,]+) rows/s",
        text,
    )
    assert top, "the report states the machine's ceiling"
    assert 0 < number(top[1]) <= 130 and number(top[2]) > 0 and number(top[3]) > 0, top.groups()


def test_the_load_test_measures_the_learners_folder_and_solution_1_the_reference(tmp_path, monkeypatch):
    """make loadtest measures the grade's airflow_data/dags (DAGS_DIR as compose resolves it), found as the
    checker finds a load; the untouched starter has none, so it stops at once and says what to do."""
    import os

    from coursekit.checker.stack import GradeStack
    from coursekit.loadtest.__main__ import folder_load

    env = {k: v for k, v in os.environ.items() if k != "DAGS_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.loadtest", "--short", "--report-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing to measure in" in result.stdout and "G4_Senior/airflow_data/dags" in result.stdout
    assert "SOLUTION=1" in result.stdout and "starting a private copy" not in result.stdout
    monkeypatch.setenv("DAGS_DIR", "../solution/dags")  # what `make loadtest SOLUTION=1` passes
    dags_dir = GradeStack(G4).dags_dir
    assert dags_dir.resolve() == (G4.path / "solution" / "dags").resolve()
    assert folder_load(dags_dir).dag_id == "load_shops_to_dwh_wap"


def test_the_newest_report_is_published_into_images_with_its_links_renamed(tmp_path):
    from coursekit.docs.images import LOADTEST_PLOTS, copy_loadtest_plots, replace_loadtest_rows

    reports, out = tmp_path / "loadtest-report", tmp_path / "images"
    out.mkdir()
    measured = tmp_path / "measured.json"
    shutil.copy(facts.MEASURED, measured)
    facts.record_measured("loadtest_ceiling_rate", 1, "an older run", measured)
    committed = (REPO_ROOT / "images" / "loadtest-report.md").read_text(encoding="utf-8")
    original = committed.replace("](loadtest-", "](").replace("[loadtest-", "[")  # as the load test wrote it
    for stamp, text in (("20261201-100000", "an older report"), ("20261203-164922", original)):
        folder = reports / stamp
        folder.mkdir(parents=True)
        for plot in LOADTEST_PLOTS:
            (folder / plot).write_bytes(b"png of " + stamp.encode())
        (folder / "backlog.csv").write_text("rate,at_sec\n", encoding="utf-8")
        (folder / "report.md").write_text(text, encoding="utf-8")
    pictures = copy_loadtest_plots(out, reports, measured)
    assert [p.name for p in pictures] == [f"loadtest-{plot}" for plot in LOADTEST_PLOTS]
    assert (out / "loadtest-throughput.png").read_bytes() == b"png of 20261203-164922", "the newest run"
    report = (out / "loadtest-report.md").read_text(encoding="utf-8")
    assert report == committed, "links renamed to the published files, nothing else changed"
    assert (out / "loadtest-backlog.csv").exists()
    recorded = {k: v["value"] for k, v in json.loads(measured.read_text(encoding="utf-8")).items() if k in KEYS}
    assert recorded == read_figures(committed), "the report's headline figures, and none of an older run"
    assert recorded["loadtest_kept_rate"] >= 250
    source = json.loads(measured.read_text(encoding="utf-8"))["loadtest_kept_rate"]["source"]
    assert started(committed) in source and "load average before" in source, source
    # images/README.md's load-test rows name the published run and its knee; other rows stay
    (out / "README.md").write_text(
        "# Pictures\n\n| a | b | c |\n| [loadtest-gone.png](x) | stale | stale |\n| [x.png](x) | x | x |\n"
    )
    replace_loadtest_rows(out, pictures)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "stale" not in readme and "| [x.png](x) | x | x |" in readme
    assert readme.count("| [loadtest-") == len(LOADTEST_PLOTS)
    assert started(committed).split(",")[0] in readme and f"{recorded['loadtest_kept_rate']} inserts/s" in readme


def test_a_reports_figures_are_read_from_its_result_and_tables():
    """The reader against a report's own words: the knee, the two tables, the ceiling sentence."""
    report = "\n".join(
        [
            "Started 2026-12-03 16:49:42 UTC, natively, private copy. The warehouse caught up 20 s after.",
            "Highest rate that kept up (latency target 300 s): **2000 inserts/s per shop** (1 rows, p95 86 s).",
            "First rate that did not keep up: **4000 inserts/s per shop**. Why: runs too long.",
            "This machine's ceiling: with no pipeline running, the load generators sustained 5,066 inserts/s per"
            " shop (asked for 16,000, 1 rows in 60 s); raw COPY moved the same rows from the shops into the"
            " warehouse at 381,380 rows/s (1.0 s out, 1.0 s in).",
            "",
            "| rate (inserts/s/shop) | step (s) | inserted/s (both shops) | p95 (s) | keeps up |",
            "|---:|---:|---:|---:|:---:|",
            "| 2000 | 240 | 3,997 | 86 | yes |",
            "| 4000 | 243 | 7,733 | 225.4 | no |",
            "",
            "| step (rate) | runs | run duration (s) | extract |",
            "|---|---:|---:|---:|",
            "| 2000 | 4 | 33.7 | 6.7 |",
            "| 4000 | 3 | 79.4 | 16.3 |",
            "| drain | 2 | 90.0 | 20.1 |",
        ]
    )
    assert started(report) == "2026-12-03 16:49:42 UTC, natively, private copy"
    assert read_figures(report) == {
        "loadtest_kept_rate": 2000,
        "loadtest_kept_p95_sec": 86,
        "loadtest_kept_run_sec": 34,
        "loadtest_kept_inserted_per_shop": 1998,
        "loadtest_failed_rate": 4000,
        "loadtest_failed_p95_sec": 225,
        "loadtest_failed_run_sec": 79,
        "loadtest_failed_inserted_per_shop": 3866,
        "loadtest_ceiling_rate": 5066,
        "loadtest_ceiling_copy_rows_per_sec": 381380,
    }
    with pytest.raises(ValueError, match="no rate that kept up"):
        read_figures(report.replace("Highest rate that kept up", "No rate kept up"))
