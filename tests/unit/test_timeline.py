"""The day picture (gim_jobs.timeline): valid SVG, one lane per job, planned marks, runs overlaid."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gim_jobs.config import load_config
from gim_jobs.schedule import PlannedLaunch, plan_day
from gim_jobs.timeline import LANES, STATUS_COLORS, render_day_svg, timeline_plan

REPO = Path(__file__).resolve().parents[2]
NS = {"s": "http://www.w3.org/2000/svg"}
UTC = dt.UTC
DAY = dt.date(2026, 6, 10)


@pytest.fixture(scope="module")
def sample():
    """config/gim.ini: the Operations Guide's sample schedule (GMT), every job on."""
    return load_config(REPO / "config" / "gim.ini").schedule


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def _lane(root: ET.Element, key: str) -> ET.Element:
    found = root.findall(f".//s:g[@data-lane='{key}']", NS)
    assert len(found) == 1, key
    return found[0]


def _marks(lane: ET.Element) -> list[ET.Element]:
    return lane.findall("s:line[@class='planned launch']", NS)


def _run(job: str, status: str, start: str, end: str | None, **kw) -> dict:
    def ts(hhmm: str) -> dt.datetime:
        h, m = map(int, hhmm.split(":"))
        return dt.datetime.combine(DAY, dt.time(h, m), tzinfo=UTC)

    return {"job_name": job, "status": status, "start_time": ts(start), "end_time": ts(end) if end else None,
            "row_count": kw.get("rows", 0), "run_type": kw.get("run_type", "scheduled"),
            "message": kw.get("message")}


def test_sample_schedule_svg_parses_with_one_lane_per_job_and_37_etl_marks(sample) -> None:
    plan = timeline_plan(DAY, sample)
    root = _parse(render_day_svg(plan, [], DAY, sample.timezone, now=dt.datetime(2026, 6, 11, tzinfo=UTC)))
    lanes = root.findall(".//s:g[@class='lane']", NS)
    assert [g.get("data-lane") for g in lanes] == [lane.key for lane in LANES]
    assert [g.get("data-job") for g in lanes] == ["ETL cycle", "Job_AggregateGIM", "Job_MaintainGIM",
                                                   "Job_UpdateStats", "Job_ExportGIM"]
    # 06:30-00:30 every 30 min: 00:00 and 00:30 (yesterday's window) + 06:30 ... 23:30
    etl = _marks(_lane(root, "etl"))
    assert len(etl) == 37
    assert [m.get("data-start")[11:16] for m in etl[:3]] == ["00:00", "00:30", "06:30"]
    assert etl[-1].get("data-start")[11:16] == "23:30"
    assert len(_marks(_lane(root, "update_stats"))) == 144  # 0/10 *
    assert [m.get("data-start")[11:16] for m in _marks(_lane(root, "export"))] == ["00:20", "08:20", "16:20"]
    assert len(_marks(_lane(root, "maintain"))) == 1
    # maintenance may run until the first ETL cycle after 03:00 (06:30, R9)
    assert _lane(root, "maintain").find("s:rect[@class='deadline']/s:title", NS).text.endswith("06:30:00 (R9)")
    # aggregation 0 4 for 23:00: yesterday's window still open until 03:00, today's from 04:00
    windows = _lane(root, "aggregate").findall("s:rect[@class='planned window']", NS)
    assert [w.get("data-start")[:16] for w in windows] == ["2026-06-09T04:00", "2026-06-10T04:00"]
    # hour ticks 00..24 and a legend naming every status
    assert [t.text for t in root.findall(".//s:text[@class='hour']", NS)] == [f"{h:02d}" for h in range(25)]
    legend = " ".join(t.text or "" for t in root.findall(".//s:g[@class='legend']/s:text", NS))
    for status in STATUS_COLORS:
        assert status.lower() in legend
    assert "planned launch" in legend and "aggregation window" in legend


def test_timeline_plan_adds_only_the_carried_over_window_to_plan_day(sample) -> None:
    plan, base = timeline_plan(DAY, sample), plan_day(DAY, sample)
    extra = [p for p in plan if p not in base]
    assert len(plan) == len(base) + 1
    assert [(p.job, p.start.date(), p.end.hour) for p in extra] == [("Job_AggregateGIM", DAY - dt.timedelta(days=1), 3)]


def test_actual_runs_are_bars_colored_by_status_in_their_lane(sample) -> None:
    runs = [
        _run("Job_ExtractICON", "COMPLETED", "06:30", "06:32", rows=1200),
        _run("Job_TransformGIM", "FAILED", "06:32", "06:40", message="boom"),
        _run("Job_MaintainGIM", "STOPPED", "03:00", "06:30"),
        _run("Job_ExportGIM", "RUNNING", "08:20", None),
        _run("Job_SomethingElse", "COMPLETED", "09:00", "09:10"),  # not a lane: ignored
        {**_run("Job_UpdateStats", "COMPLETED", "00:00", "00:01"),  # the day before: not drawn
         "start_time": dt.datetime(2026, 6, 9, 12, tzinfo=UTC), "end_time": dt.datetime(2026, 6, 9, 12, 1, tzinfo=UTC)},
    ]
    now = dt.datetime.combine(DAY, dt.time(9, 0), tzinfo=UTC)
    root = _parse(render_day_svg(timeline_plan(DAY, sample), runs, DAY, "GMT", now=now,
                                 href=lambda r: f"../dags/x/runs/{r['job_name']}"))
    bars = root.findall(".//s:rect[@data-status]", NS)
    assert sorted((b.get("data-job"), b.get("data-status")) for b in bars) == [
        ("Job_ExportGIM", "RUNNING"), ("Job_ExtractICON", "COMPLETED"), ("Job_MaintainGIM", "STOPPED"),
        ("Job_TransformGIM", "FAILED")]
    for b in bars:
        assert b.get("fill") == STATUS_COLORS[b.get("data-status")]
    etl = _lane(root, "etl")
    assert len(etl.findall(".//s:rect[@data-status]", NS)) == 2
    ex = etl.find(".//s:rect[@data-job='Job_ExtractICON']", NS)
    tr = etl.find(".//s:rect[@data-job='Job_TransformGIM']", NS)
    assert float(ex.get("y")) < float(tr.get("y"))  # extract row above transform row
    assert float(ex.get("x")) < float(tr.get("x"))
    assert "1200 rows" in ex.find("s:title", NS).text
    # a 2-minute run is still visible; the running export reaches "now" (09:00 = 3/8 of the plot)
    assert float(ex.get("width")) >= 2
    exp = _lane(root, "export").find(".//s:rect[@data-status='RUNNING']", NS)
    assert "now (running)" in exp.find("s:title", NS).text
    assert float(exp.get("x")) + float(exp.get("width")) == pytest.approx(190 + 986 * 9 / 24, abs=0.2)
    assert root.find(".//s:line[@class='now']", NS) is not None
    # links to the Airflow run
    links = root.findall(".//s:a", NS)
    assert {a.get("href") for a in links} == {f"../dags/x/runs/{j}" for j in
                                             ("Job_ExtractICON", "Job_TransformGIM", "Job_MaintainGIM",
                                              "Job_ExportGIM")}


def test_text_is_escaped(sample) -> None:
    evil = "<script>alert('x')</script> & \"q\""
    plan = [PlannedLaunch("ETL cycle", "gim_etl_cycle", dt.datetime(2026, 6, 10, 7, tzinfo=UTC), None, evil)]
    runs = [_run("Job_ExtractICON", "FAILED", "07:00", "07:05", message=evil)]
    svg = render_day_svg(plan, runs, DAY, "GMT", notice=evil, title=f"title {evil}",
                         href=lambda r: "../x?a=1&b=<2>")
    assert "<script>" not in svg
    root = _parse(svg)  # still well-formed XML
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(evil in (t or "") for t in titles)
    assert root.find(".//s:text[@class='notice']", NS).text == evil
    assert root.find(".//s:a", NS).get("href") == "../x?a=1&b=<2>"


def test_dst_day_is_23_hours_wide_without_the_skipped_hour(sample) -> None:
    day = dt.date(2026, 3, 8)  # America/New_York springs forward at 02:00
    root = _parse(render_day_svg([], [], day, "America/New_York"))
    hours = [t.text for t in root.findall(".//s:text[@class='hour']", NS)]
    assert "02" not in hours and len(hours) == 24
    assert not _marks(_lane(root, "etl"))
    assert "0 ran" in "".join(t.text for t in root.findall(".//s:text[@class='lane-sub']", NS))
