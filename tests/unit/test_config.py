"""The configuration schema and check (R21), cross-option rules (R6) and reload on change (R14).

Pure: no database, no Airflow. Each test writes a small INI file into its tmp folder.
"""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gim_jobs import config as C
from gim_jobs.config import (
    OPTIONS,
    CheckResult,
    ConfigError,
    GimConfig,
    Problem,
    check_config,
    current_config,
    default_config_path,
    load_config,
    render_options_markdown,
    summary,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "gim.ini"
NY = "[date-time-ny]\ndate-time-tz = America/New_York\ndate-time-table-name = date_time_ny\n"


def write(tmp_path: Path, text: str, name: str = "gim.ini") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check(tmp_path: Path, text: str) -> CheckResult:
    return check_config(write(tmp_path, text))


def one_option(tmp_path: Path, section: str, option: str, value: str) -> CheckResult:
    return check(tmp_path, f"[{section}]\n{option} = {value}\n")


def errors_for(result: CheckResult, option: str) -> list[Problem]:
    return [p for p in result.errors if p.option == option]


def assert_ok(result: CheckResult) -> GimConfig:
    assert result.ok, [str(p) for p in result.errors]
    assert result.config is not None
    return result.config


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------

EXPECTED_DEFAULTS: dict[tuple[str, str], object] = {
    ("schedule", "run-scheduler"): False,
    ("schedule", "etl-start-time"): 6 * 60 + 30,
    ("schedule", "etl-end-time"): 30,
    ("schedule", "etl-frequency"): 30,
    ("schedule", "timezone"): "GMT",
    ("schedule", "maintain-start-time"): 3 * 60,
    ("schedule", "run-maintain"): False,
    ("schedule", "run-update-stats"): False,
    ("schedule", "update-stats-schedule"): "0/10 *",
    ("schedule", "run-aggregates"): False,
    ("schedule", "aggregate-schedule"): "0 1",
    ("schedule", "aggregate-duration"): 5 * 60,
    ("schedule", "run-export"): False,
    ("schedule", "export-schedule"): "20 0/8",
    ("schedule", "on-demand-migration"): False,
    ("gim-etl", "days-to-keep-gim-facts"): 400,
    ("gim-etl", "days-to-keep-gidb-facts"): 14,
    ("gim-etl", "days-to-keep-cfg-facts"): 400,
    ("gim-etl", "days-to-keep-discards-and-job-history"): 600,
    ("gim-etl", "days-to-keep-gdpr-history"): 15,
    ("gim-etl", "days-to-keep-active-facts"): 30,
    ("gim-etl", "partitioning-ahead-range"): 14,
    ("gim-etl", "partitioning-interval-size-gim"): 86400,
    ("gim-etl", "extract-data-thread-pool-size"): 32,
    ("gim-etl", "extract-data-chunk-size"): 50000,
    ("gim-etl", "delayed-data-threshold"): 900,
    ("gim-etl", "sub-hour-interval"): 15,
    ("gim-etl", "job-test-delay-seconds"): 0,
    ("gim-etl", "job-test-start-delay-seconds"): 0,
    ("gim-transformation", "chunk-size"): 7200,
    ("gim-transformation", "max-state-duration"): 14400,
    ("gim-transformation", "user-event-data-timeout"): 3600,
    ("gim-transformation", "sm-resource-state-priority"): ("ACW", "NOT_READY", "BUSY", "READY"),
    ("gim-transformation", "stop-ixn-queues"): (),
    ("gim-export", "output-directory"): "output",  # relative to the config dir, checked below
    ("gim-export", "days-to-keep-output-files"): 14,
    ("gim-export", "use-export-views"): False,
    ("gim-export", "chunk-size-seconds"): 28800,
    ("gim-export", "max-retries"): 3,
    ("gim-export", "retry-delay-seconds"): 30,
    ("gim-export", "output-files-encoding"): "utf8",
    ("gim-export", "start-date"): None,
    ("gim-export", "thread-pool-size"): 10,
    ("gim-export", "encrypt-certificate"): None,
    ("date-time", "date-time-tz"): "GMT",
    ("date-time", "date-time-max-days-ahead"): 366,
    ("date-time", "date-time-min-days-ahead"): 183,
    ("date-time", "date-time-start-year"): 2012,
    ("date-time", "date-time-table-name"): "date_time",
    ("date-time", "first-day-of-week"): 1,
    ("date-time", "minimal-days-in-first-week"): 1,
    ("date-time", "simple-week-numbering"): True,
    ("date-time", "fiscal-year-start"): (1, 1),
    ("date-time-<name>", "date-time-tz"): "America/New_York",  # required: set in the test file
    ("date-time-<name>", "date-time-max-days-ahead"): 366,
    ("date-time-<name>", "date-time-min-days-ahead"): 183,
    ("date-time-<name>", "date-time-start-year"): 2012,
    ("date-time-<name>", "date-time-table-name"): "date_time_ny",  # required: set in the test file
    ("date-time-<name>", "first-day-of-week"): 1,
    ("date-time-<name>", "minimal-days-in-first-week"): 1,
    ("date-time-<name>", "simple-week-numbering"): False,
    ("date-time-<name>", "fiscal-year-start"): (1, 1),
}


def _value(cfg: GimConfig, section: str, name: str) -> object:
    field = name.replace("-", "_")
    holder = {
        "schedule": cfg.schedule,
        "gim-etl": cfg.gim_etl,
        "gim-transformation": cfg.gim_transformation,
        "gim-export": cfg.gim_export,
        "date-time": cfg.date_time,
        "date-time-<name>": cfg.calendars.get("ny"),
    }[section]
    value = getattr(holder, field)
    return value.text if hasattr(value, "to_cron5") else value


def test_every_option_has_its_default(tmp_path: Path) -> None:
    assert {(s.section, s.name) for s in OPTIONS} == set(EXPECTED_DEFAULTS)
    cfg = assert_ok(check(tmp_path, NY))
    for (section, name), expected in EXPECTED_DEFAULTS.items():
        actual = _value(cfg, section, name)
        if name == "output-directory":
            assert actual == tmp_path / "output"
        else:
            assert actual == expected, (section, name)
    s = cfg.schedule
    assert (s.etl_start_time_text, s.etl_end_time_text, s.aggregate_duration_text) == (
        "06:30",
        "00:30",
        "5:00",
    )
    assert s.export_schedule.to_cron5().split()[2:] == ["*", "*", "*"]


def test_empty_file_is_valid_and_has_only_the_default_calendar(tmp_path: Path) -> None:
    cfg = assert_ok(check(tmp_path, ""))
    assert list(cfg.calendars) == [C.DEFAULT_CALENDAR]
    assert cfg.calendars[""] is cfg.date_time
    assert cfg.date_time.section == "date-time"


def test_cfg_facts_default_follows_gim_facts(tmp_path: Path) -> None:
    cfg = assert_ok(one_option(tmp_path, "gim-etl", "days-to-keep-gim-facts", "500"))
    assert cfg.gim_etl.days_to_keep_cfg_facts == 500


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("TRUE", True), ("False", False), ("false", False)]
)
def test_bool_true_false_any_case(tmp_path: Path, text: str, expected: bool) -> None:
    cfg = assert_ok(one_option(tmp_path, "schedule", "run-export", text))
    assert cfg.schedule.run_export is expected


@pytest.mark.parametrize("text", ["yes", "no", "1", "0", "on", "", "truee"])
def test_bool_rejects_anything_but_true_false(tmp_path: Path, text: str) -> None:
    result = one_option(tmp_path, "schedule", "run-maintain", text)
    [problem] = errors_for(result, "run-maintain")
    assert "must be true or false" in problem.message


def test_problem_line_format(tmp_path: Path) -> None:
    result = one_option(tmp_path, "schedule", "etl-frequency", "0")
    assert [str(p) for p in result.errors] == [
        '[schedule] etl-frequency = "0": must be an integer from 1 to 1440 (minutes between ETL cycle starts)'
    ]
    assert result.errors[0].severity == "error"
    assert result.config is None and not result.ok


@pytest.mark.parametrize(
    ("section", "option", "good", "bad"),
    [
        ("schedule", "etl-frequency", ["1", "1440", "15"], ["0", "1441", "abc", "1.5", "", "-5"]),
        ("gim-etl", "days-to-keep-gdpr-history", ["0", "30"], ["31", "-1"]),
        ("gim-etl", "days-to-keep-gim-facts", ["14", "4000"], ["0"]),
        ("gim-etl", "partitioning-interval-size-gim", ["3600", "2592000"], ["3599"]),
        ("gim-etl", "extract-data-chunk-size", ["100"], ["99"]),
        ("gim-etl", "delayed-data-threshold", ["60", "3600"], ["59", "3601"]),
        ("gim-etl", "sub-hour-interval", ["15", "30"], ["20", "60"]),
        ("gim-etl", "job-test-delay-seconds", ["0", "0.5", "2"], ["-1", "x"]),
        ("gim-etl", "job-test-start-delay-seconds", ["0", "1.5"], ["-2", "soon"]),
        ("gim-transformation", "chunk-size", ["0", "7200"], ["-1"]),
        ("gim-transformation", "max-state-duration", ["901"], ["900", "0"]),
        ("gim-export", "days-to-keep-output-files", ["1"], ["0"]),
        ("gim-export", "chunk-size-seconds", ["60"], ["0"]),
        ("gim-export", "max-retries", ["0", "10"], ["-1"]),
        ("gim-export", "retry-delay-seconds", ["0"], ["-1"]),
        ("gim-export", "thread-pool-size", ["1"], ["0"]),
        ("date-time", "date-time-max-days-ahead", ["183", "3660"], ["0", "3661"]),
        ("date-time", "date-time-start-year", ["1970", "2100"], ["1969", "2101"]),
        ("date-time", "first-day-of-week", ["1", "7"], ["0", "8"]),
        ("date-time", "minimal-days-in-first-week", ["1", "7"], ["0", "8"]),
    ],
)
def test_integer_ranges(tmp_path: Path, section: str, option: str, good: list[str], bad: list[str]) -> None:
    for text in good:
        assert_ok(one_option(tmp_path, section, option, text))
    for text in bad:
        result = one_option(tmp_path, section, option, text)
        assert len(errors_for(result, option)) == 1, (option, text, [str(p) for p in result.errors])


@pytest.mark.parametrize(("text", "minutes"), [("00:00", 0), ("23:59", 1439), ("06:30", 390)])
def test_hhmm_valid(tmp_path: Path, text: str, minutes: int) -> None:
    cfg = assert_ok(one_option(tmp_path, "schedule", "etl-start-time", text))
    assert (cfg.schedule.etl_start_time, cfg.schedule.etl_start_time_text) == (minutes, text)


@pytest.mark.parametrize("text", ["24:00", "12:60", "1230", "ab:cd", "", "6.30"])
def test_hhmm_invalid(tmp_path: Path, text: str) -> None:
    result = one_option(tmp_path, "schedule", "etl-end-time", text)
    [problem] = errors_for(result, "etl-end-time")
    assert "HH:mm" in problem.message


@pytest.mark.parametrize(("text", "minutes"), [("24:00", 1440), ("5:00", 300), ("00:00", 0), ("23:00", 1380)])
def test_aggregate_duration_allows_24_00_and_one_digit_hour(tmp_path: Path, text: str, minutes: int) -> None:
    cfg = assert_ok(one_option(tmp_path, "schedule", "aggregate-duration", text))
    assert cfg.schedule.aggregate_duration == minutes


@pytest.mark.parametrize("text", ["24:30", "25:00", "5:60", "five"])
def test_aggregate_duration_invalid(tmp_path: Path, text: str) -> None:
    assert errors_for(one_option(tmp_path, "schedule", "aggregate-duration", text), "aggregate-duration")


@pytest.mark.parametrize("text", ["0/10 *", "20 0/8", "0,30,45 *", "5-10 1-3", "0 1", "*/15 *"])
def test_cron2_valid(tmp_path: Path, text: str) -> None:
    cfg = assert_ok(one_option(tmp_path, "schedule", "update-stats-schedule", text))
    assert cfg.schedule.update_stats_schedule.text == text


def test_cron2_quartz_step_means_from_a_every_b(tmp_path: Path) -> None:
    cfg = assert_ok(one_option(tmp_path, "schedule", "export-schedule", "20 0/8"))
    assert cfg.schedule.export_schedule.hours == (0, 8, 16)
    assert cfg.schedule.export_schedule.minutes == (20,)


@pytest.mark.parametrize("text", ["60 *", "* 24", "*/x *", "*", "0 0 *", "0 1 * * *"])
def test_cron2_invalid(tmp_path: Path, text: str) -> None:
    result = one_option(tmp_path, "schedule", "aggregate-schedule", text)
    [problem] = errors_for(result, "aggregate-schedule")
    assert problem.message.startswith('must be a 2-field cron "minute hour"')


@pytest.mark.parametrize("text", ["GMT", "UTC", "America/New_York", "Europe/Berlin"])
def test_timezone_valid(tmp_path: Path, text: str) -> None:
    assert assert_ok(one_option(tmp_path, "schedule", "timezone", text)).schedule.timezone == text


@pytest.mark.parametrize("text", ["Mars/Base", "../etc/passwd", "GMT+25", ""])
def test_timezone_invalid(tmp_path: Path, text: str) -> None:
    [problem] = errors_for(one_option(tmp_path, "schedule", "timezone", text), "timezone")
    assert "IANA" in problem.message


@pytest.mark.parametrize("text", ["utf8", "UTF-8", "ISO-8859-1", "windows-1252", "US-ASCII", "UTF-16LE"])
def test_encoding_valid(tmp_path: Path, text: str) -> None:
    assert assert_ok(one_option(tmp_path, "gim-export", "output-files-encoding", text))


@pytest.mark.parametrize("text", ["x-klingon", "base64", ""])
def test_encoding_invalid(tmp_path: Path, text: str) -> None:
    assert errors_for(
        one_option(tmp_path, "gim-export", "output-files-encoding", text), "output-files-encoding"
    )


def test_start_date_valid_is_aware_utc(tmp_path: Path) -> None:
    cfg = assert_ok(one_option(tmp_path, "gim-export", "start-date", "2024-01-02 03:04:05"))
    assert cfg.gim_export.start_date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_start_date_empty_means_unset(tmp_path: Path) -> None:
    assert assert_ok(one_option(tmp_path, "gim-export", "start-date", "")).gim_export.start_date is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2999-01-01 00:00:00", "future"),
        ("1969-12-31 23:59:59", "after 1970"),
        ("1970-01-01 00:00:00", "after 1970"),
        ("2024-01-01", "yyyy-mm-dd hh:mm:ss"),
        ("01/02/2024 00:00:00", "yyyy-mm-dd hh:mm:ss"),
        ("2024-02-30 00:00:00", "yyyy-mm-dd hh:mm:ss"),
    ],
)
def test_start_date_invalid(tmp_path: Path, text: str, reason: str) -> None:
    [problem] = errors_for(one_option(tmp_path, "gim-export", "start-date", text), "start-date")
    assert reason in problem.message


def test_output_directory_relative_resolves_against_config_dir(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cfg = assert_ok(check_config(write(tmp_path / "conf", "[gim-export]\noutput-directory = ../out/x\n")))
    assert cfg.gim_export.output_directory == tmp_path / "out" / "x"
    assert cfg.gim_export.output_directory.is_absolute()
    assert not (tmp_path / "out").exists()  # the check creates nothing


def test_output_directory_may_not_climb_above_the_config_dirs_parent(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    result = check_config(write(tmp_path / "conf", "[gim-export]\noutput-directory = ../../x\n"))
    [problem] = errors_for(result, "output-directory")
    assert "climbs above" in problem.message


def test_output_directory_under_a_regular_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = one_option(tmp_path, "gim-export", "output-directory", str(tmp_path / "afile" / "sub" / "dir"))
    [problem] = errors_for(result, "output-directory")
    assert "afile is not a directory" in problem.message


def test_output_directory_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    [problem] = errors_for(
        one_option(tmp_path, "gim-export", "output-directory", "afile"), "output-directory"
    )
    assert "exists and is not a directory" in problem.message


def test_output_directory_existing_absolute(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    cfg = assert_ok(one_option(tmp_path, "gim-export", "output-directory", str(tmp_path / "exp")))
    assert cfg.gim_export.output_directory == tmp_path / "exp"


def test_encrypt_certificate_must_exist(tmp_path: Path) -> None:
    assert errors_for(
        one_option(tmp_path, "gim-export", "encrypt-certificate", "nope.pem"), "encrypt-certificate"
    )
    (tmp_path / "cert.pem").write_text("---")
    cfg = assert_ok(one_option(tmp_path, "gim-export", "encrypt-certificate", "cert.pem"))
    assert cfg.gim_export.encrypt_certificate == tmp_path / "cert.pem"


@pytest.mark.parametrize("text", ["READY,BUSY,NOT_READY,ACW", "acw, not_ready, busy, ready"])
def test_state_priority_any_order(tmp_path: Path, text: str) -> None:
    cfg = assert_ok(one_option(tmp_path, "gim-transformation", "sm-resource-state-priority", text))
    assert sorted(cfg.gim_transformation.sm_resource_state_priority) == ["ACW", "BUSY", "NOT_READY", "READY"]


@pytest.mark.parametrize(
    "text", ["ACW, NOT_READY, BUSY", "ACW, ACW, NOT_READY, BUSY, READY", "ACW, NOT_READY, BUSY, IDLE"]
)
def test_state_priority_needs_all_four_once(tmp_path: Path, text: str) -> None:
    result = one_option(tmp_path, "gim-transformation", "sm-resource-state-priority", text)
    assert errors_for(result, "sm-resource-state-priority")


def test_stop_ixn_queues_list(tmp_path: Path) -> None:
    cfg = assert_ok(one_option(tmp_path, "gim-transformation", "stop-ixn-queues", "q1, q 2,,q3"))
    assert cfg.gim_transformation.stop_ixn_queues == ("q1", "q 2", "q3")


def test_custom_calendar_requires_zone_and_table(tmp_path: Path) -> None:
    result = check(tmp_path, "[date-time-eu]\ndate-time-max-days-ahead = 400\n")
    assert {(p.section, p.option) for p in result.errors} == {
        ("date-time-eu", "date-time-tz"),
        ("date-time-eu", "date-time-table-name"),
    }
    assert all("required" in p.message for p in result.errors)


@pytest.mark.parametrize("text", ["Date_NY", "date-ny", "1abc", "date_time", "a" * 64, ""])
def test_custom_calendar_table_name_invalid(tmp_path: Path, text: str) -> None:
    result = check(tmp_path, f"[date-time-x]\ndate-time-tz = UTC\ndate-time-table-name = {text}\n")
    assert errors_for(result, "date-time-table-name")


def test_default_calendar_table_is_date_time(tmp_path: Path) -> None:
    assert errors_for(
        one_option(tmp_path, "date-time", "date-time-table-name", "cal"), "date-time-table-name"
    )


def test_custom_calendars_keyed_by_name(tmp_path: Path) -> None:
    cfg = assert_ok(
        check(tmp_path, NY + "[date-time-eu]\ndate-time-tz = Europe/Paris\ndate-time-table-name = d_eu\n")
    )
    assert list(cfg.calendars) == ["", "ny", "eu"]
    assert cfg.calendars["eu"].section == "date-time-eu"
    assert cfg.calendars["eu"].date_time_tz == "Europe/Paris"


@pytest.mark.parametrize(
    ("text", "ok"), [("04-01", True), ("12-31", True), ("02-29", False), ("13-01", False), ("4-1", False)]
)
def test_fiscal_year_start(tmp_path: Path, text: str, ok: bool) -> None:
    result = one_option(tmp_path, "date-time", "fiscal-year-start", text)
    assert result.ok is ok
    if ok:
        assert result.config is not None
        assert result.config.date_time.fiscal_year_start == (int(text[:2]), int(text[3:]))


# ---------------------------------------------------------------------------------------------
# Cross-option rules
# ---------------------------------------------------------------------------------------------


def test_r21_cfg_facts_at_least_gim_facts(tmp_path: Path) -> None:
    result = check(tmp_path, "[gim-etl]\ndays-to-keep-gim-facts = 400\ndays-to-keep-cfg-facts = 300\n")
    [problem] = result.errors
    assert (problem.option, problem.value) == ("days-to-keep-cfg-facts", "300")
    assert "days-to-keep-gim-facts (400)" in problem.message
    assert_ok(check(tmp_path, "[gim-etl]\ndays-to-keep-gim-facts = 400\ndays-to-keep-cfg-facts = 400\n"))


def test_r21_gidb_facts_at_most_gim_facts(tmp_path: Path) -> None:
    result = check(tmp_path, "[gim-etl]\ndays-to-keep-gim-facts = 10\ndays-to-keep-gidb-facts = 14\n")
    [problem] = result.errors
    assert problem.option == "days-to-keep-gidb-facts" and "days-to-keep-gim-facts (10)" in problem.message


def test_r21_min_days_ahead_at_most_max_per_calendar(tmp_path: Path) -> None:
    result = check(tmp_path, NY + "date-time-max-days-ahead = 100\n")
    [problem] = result.errors
    assert (problem.section, problem.option) == ("date-time-ny", "date-time-min-days-ahead")
    assert "date-time-max-days-ahead (100)" in problem.message and "183 is the default" in problem.message
    assert_ok(check(tmp_path, NY + "date-time-max-days-ahead = 100\ndate-time-min-days-ahead = 100\n"))


def test_r21_start_date_needs_history_at_least_gim_facts(tmp_path: Path) -> None:
    base = "[gim-etl]\ndays-to-keep-gim-facts = 400\ndays-to-keep-discards-and-job-history = 300\n"
    assert_ok(check(tmp_path, base))  # only with start-date
    result = check(tmp_path, base + "[gim-export]\nstart-date = 2024-01-01 00:00:00\n")
    [problem] = result.errors
    assert (problem.section, problem.option) == ("gim-export", "start-date")
    assert "days-to-keep-discards-and-job-history (300)" in problem.message
    assert "days-to-keep-gim-facts (400)" in problem.message


def test_r21_calendars_need_distinct_tables(tmp_path: Path) -> None:
    result = check(
        tmp_path, NY + "[date-time-ny2]\ndate-time-tz = UTC\ndate-time-table-name = date_time_ny\n"
    )
    [problem] = result.errors
    assert (problem.section, problem.option) == ("date-time-ny2", "date-time-table-name")
    assert "[date-time-ny]" in problem.message


def _maint(tmp_path: Path, start: str, end: str, maint: str, run: str = "true") -> CheckResult:
    return check(
        tmp_path,
        f"[schedule]\netl-start-time = {start}\netl-end-time = {end}\n"
        f"maintain-start-time = {maint}\nrun-maintain = {run}\n",
    )


@pytest.mark.parametrize("maint", ["07:00", "00:15", "00:30", "06:30", "23:59", "12:00"])
def test_r06_maintenance_inside_midnight_spanning_window_is_rejected(tmp_path: Path, maint: str) -> None:
    result = _maint(tmp_path, "06:30", "00:30", maint)
    [problem] = result.errors
    assert (problem.option, problem.value) == ("maintain-start-time", maint)
    assert "etl-start-time" in problem.message and "etl-end-time" in problem.message
    assert "(etl-start-time 06:30 to etl-end-time 00:30, spanning midnight)" in problem.message
    assert str(problem).startswith(
        f'[schedule] maintain-start-time = "{maint}": must lie outside the ETL window'
    )


@pytest.mark.parametrize("maint", ["03:00", "00:31", "06:29"])
def test_r06_maintenance_outside_window_is_accepted(tmp_path: Path, maint: str) -> None:
    assert_ok(_maint(tmp_path, "06:30", "00:30", maint))


def test_r06_same_day_window(tmp_path: Path) -> None:
    assert_ok(_maint(tmp_path, "08:00", "18:00", "07:59"))
    assert_ok(_maint(tmp_path, "08:00", "18:00", "18:01"))
    assert not _maint(tmp_path, "08:00", "18:00", "12:00").ok


def test_r06_equal_start_and_end_is_a_whole_day_window(tmp_path: Path) -> None:
    result = _maint(tmp_path, "05:00", "05:00", "17:00")
    [problem] = result.errors
    assert "whole day" in problem.message


def test_r06_only_checked_when_run_maintain(tmp_path: Path) -> None:
    assert_ok(_maint(tmp_path, "06:30", "00:30", "12:00", run="false"))


def test_r06_default_schedule_is_consistent(tmp_path: Path) -> None:
    assert_ok(one_option(tmp_path, "schedule", "run-maintain", "true"))


# ---------------------------------------------------------------------------------------------
# Problems: all at once, warnings, file errors
# ---------------------------------------------------------------------------------------------


def test_r21_all_problems_reported_at_once(tmp_path: Path) -> None:
    result = check(
        tmp_path,
        """\
        [schedule]
        etl-frequency = 0
        timezone = Nowhere/City
        update-stats-schedule = 60 *
        etl-start-tme = 06:00
        [gim-etl]
        days-to-keep-gim-facts = 400
        days-to-keep-cfg-facts = 10
        [gim-export]
        output-files-encoding = nope
        [date-time-x]
        date-time-tz = UTC
        """,
    )
    assert not result.ok and result.config is None
    assert [(p.section, p.option) for p in result.errors] == [
        ("schedule", "etl-frequency"),
        ("schedule", "timezone"),
        ("schedule", "update-stats-schedule"),
        ("gim-export", "output-files-encoding"),
        ("date-time-x", "date-time-table-name"),
        ("gim-etl", "days-to-keep-cfg-facts"),
    ]
    assert [p.option for p in result.warnings] == ["etl-start-tme"]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, (tmp_path / "gim.ini").read_text()))
    assert len(info.value.problems) == 6
    text = str(info.value)
    assert "6 errors" in text
    for problem in result.errors:
        assert str(problem) in text


def test_did_you_mean_for_misspelled_option(tmp_path: Path) -> None:
    result = one_option(tmp_path, "schedule", "etl-start-tme", "07:00")
    assert result.ok  # a warning does not block
    [warning] = result.warnings
    assert warning.severity == "warning"
    assert (
        str(warning)
        == '[schedule] etl-start-tme = "07:00": unknown option (ignored); did you mean "etl-start-time"?'
    )


def test_did_you_mean_ignores_case(tmp_path: Path) -> None:
    [warning] = one_option(tmp_path, "schedule", "ETL-Frequency", "15").warnings
    assert 'did you mean "etl-frequency"?' in warning.message


def test_unknown_option_is_a_warning(tmp_path: Path) -> None:
    result = one_option(tmp_path, "gim-etl", "populate-thirdparty-media", "true")
    assert result.ok
    [warning] = result.warnings
    assert warning.message == "unknown option (ignored)"


def test_option_in_the_wrong_section(tmp_path: Path) -> None:
    [warning] = one_option(tmp_path, "gim-etl", "etl-frequency", "15").warnings
    assert "belongs in [schedule]" in warning.message


def test_unknown_sections_ignored_unless_misspelled(tmp_path: Path) -> None:
    result = check(
        tmp_path, "[error-policy]\nerror-policy-irf-exception = exception\n[shedule]\nrun-export = true\n"
    )
    assert result.ok
    [warning] = result.warnings
    assert str(warning) == '[shedule]: unknown section (ignored); did you mean "[schedule]"?'


def test_default_section_does_not_leak(tmp_path: Path) -> None:
    result = check(tmp_path, "[DEFAULT]\netl-frequency = 0\n[schedule]\n")
    assert result.ok and result.config is not None
    assert result.config.schedule.etl_frequency == 30


def test_inline_comments_and_case_sensitive_names(tmp_path: Path) -> None:
    cfg = assert_ok(
        check(tmp_path, "[schedule]\netl-frequency = 15 ; every quarter\ntimezone = UTC # zone\n")
    )
    assert (cfg.schedule.etl_frequency, cfg.schedule.timezone) == (15, "UTC")


def test_missing_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "gim.ini"
    result = check_config(missing)
    [problem] = result.errors
    assert str(missing) in str(problem) and not result.ok
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(missing)
    with pytest.raises(ConfigError):
        current_config(missing)


@pytest.mark.parametrize(
    "text", ["etl-frequency = 5\n", "[schedule]\nrun-export = true\nrun-export = false\n", "[schedule\n"]
)
def test_unparseable_ini_is_an_error(tmp_path: Path, text: str) -> None:
    result = check(tmp_path, text)
    [problem] = result.errors
    assert "cannot parse INI" in problem.message and str(tmp_path) in problem.message


def test_shipped_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIM_CONFIG", raising=False)
    assert default_config_path() == SHIPPED
    result = check_config()
    assert result.errors == [] and result.warnings == []
    cfg = load_config(SHIPPED)
    s = cfg.schedule
    assert s.run_scheduler and s.run_maintain and s.run_update_stats and s.run_aggregates and s.run_export
    assert (s.etl_start_time_text, s.etl_end_time_text, s.etl_frequency) == ("06:30", "00:30", 30)
    assert (s.aggregate_schedule.text, s.aggregate_duration_text) == ("0 4", "23:00")
    assert cfg.gim_export.output_directory == REPO / ".gim" / "export"
    assert cfg.calendars["ny"].date_time_table_name == "date_time_ny"
    assert summary(cfg) == (
        f"config OK ({SHIPPED}): ETL 06:30-00:30 every 30 min GMT; maintenance 03:00; "
        "aggregates on 0 4 for 23:00; update-stats on 0/10 *; export on 20 0/8; "
        "calendars date_time (GMT), date_time_ny (America/New_York); scheduler on"
    )


def test_default_config_path_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIM_CONFIG", str(tmp_path / "x.ini"))
    assert default_config_path() == tmp_path / "x.ini"


def test_summary_says_off(tmp_path: Path) -> None:
    cfg = assert_ok(check(tmp_path, ""))
    line = summary(cfg)
    assert "maintenance off; aggregates off; update-stats off; export off" in line
    assert line.endswith("scheduler off")


# ---------------------------------------------------------------------------------------------
# R14: current_config sees every change
# ---------------------------------------------------------------------------------------------


def test_r14_current_config_rereads_changed_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[schedule]\netl-frequency = 30\n")
    first = current_config(path)
    assert first.schedule.etl_frequency == 30
    assert current_config(path) is first  # unchanged: cached
    path.write_text("[schedule]\netl-frequency = 15\n")  # same size, likely the same mtime tick
    assert current_config(path).schedule.etl_frequency == 15
    path.write_text("[schedule]\netl-frequency = 45\nrun-export = true\n")
    assert current_config(path).schedule.run_export is True


def test_r21_current_config_raises_on_invalid_change_instead_of_stale(tmp_path: Path) -> None:
    path = write(tmp_path, "[schedule]\netl-frequency = 30\n")
    assert current_config(path).schedule.etl_frequency == 30
    path.write_text("[schedule]\netl-frequency = 0\n")
    with pytest.raises(ConfigError) as info:
        current_config(path)
    assert [p.option for p in info.value.problems] == ["etl-frequency"]
    with pytest.raises(ConfigError):  # still invalid: still refused
        current_config(path)
    path.write_text("[schedule]\netl-frequency = 20\n")
    assert current_config(path).schedule.etl_frequency == 20


def test_r14_current_config_cache_for_old_files(tmp_path: Path) -> None:
    path = write(tmp_path, "[schedule]\netl-frequency = 30\n")
    old = 1_000_000_000
    os.utime(path, (old, old))
    first = current_config(path)
    assert current_config(path) is first
    os.utime(path, (old + 1, old + 1))  # touched: parsed again, same values
    second = current_config(path)
    assert second is not first and second == first


# ---------------------------------------------------------------------------------------------
# Docs
# ---------------------------------------------------------------------------------------------


def test_render_options_markdown_mentions_every_option() -> None:
    text = render_options_markdown()
    lines = text.splitlines()
    assert lines[0] == "| section | option | default | valid values | meaning |"
    assert len(lines) == 2 + len(OPTIONS)
    for spec in OPTIONS:
        assert f"| `[{spec.section}]` | `{spec.name}` |" in text
    assert "TEST ONLY" in text  # job-test-delay-seconds is flagged


def test_schema_has_unique_option_names_per_section() -> None:
    keys = [(s.section, s.name) for s in OPTIONS]
    assert len(keys) == len(set(keys))
    assert all(s.valid and s.doc for s in OPTIONS)


def test_output_directory_empty_is_an_error(tmp_path: Path) -> None:
    assert errors_for(one_option(tmp_path, "gim-export", "output-directory", ""), "output-directory")


def test_schedule_options_feed_schedule_plan_day() -> None:
    """Contract with gim_jobs.schedule: the field names plan_day reads exist with the right types."""
    from datetime import date

    from gim_jobs.schedule import plan_day

    cfg = load_config(SHIPPED)
    jobs = {launch.job for launch in plan_day(date(2026, 6, 1), cfg.schedule)}
    assert {"Job_MaintainGIM", "Job_AggregateGIM", "Job_UpdateStats", "Job_ExportGIM"} <= jobs
