"""A run folder's small files: names, the owner tag, the log tail."""

from __future__ import annotations

from pathlib import Path

from ssn3d.runs.folder import LOG_TAIL_BYTES, clean_run_name, new_run_dir, read_owner, tail_log, write_owner


def test_run_names_become_safe_folder_names() -> None:
    assert clean_run_name("my run: 1/2") == "my-run-1-2"
    assert clean_run_name("../../etc") == "etc" and clean_run_name(".hidden") == "hidden"
    assert clean_run_name("!!!") == "run" and clean_run_name("ok_1.5-a") == "ok_1.5-a"


def test_a_new_run_dir_never_reuses_a_taken_folder(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "a b")
    assert first.parent == tmp_path and first.name.startswith("a-b-")
    first.mkdir()
    assert new_run_dir(tmp_path, "a b") != first  # same second: a suffix


def test_the_owner_tag_is_read_back_and_a_run_without_one_is_nobodys(tmp_path: Path) -> None:
    assert read_owner(tmp_path) is None
    write_owner(tmp_path, "abc123")
    assert read_owner(tmp_path) == "abc123"


def test_the_log_tail_reads_only_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    assert tail_log(log) == ""  # no log yet
    log.write_text("".join(f"line {i}\n" for i in range(10 * LOG_TAIL_BYTES // 8)))
    tail = tail_log(log, lines=3).splitlines()
    assert tail == [f"line {i}" for i in range(10 * LOG_TAIL_BYTES // 8 - 3, 10 * LOG_TAIL_BYTES // 8)]
