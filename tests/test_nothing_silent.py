"""Nothing skipped in silence (issue 20): every file an ingest passes over is counted by extension,
listed with why under ``-v``, remembered for ``info``, and a file named on the command line that is
not indexed is always said to be so. The README's table of types is the one detect.py reads."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from click.testing import CliRunner
from conftest import DATA, run_json

from ibsearch.cli import cli
from ibsearch.encoder.media.detect import EXTENSIONS

ROOT = Path(__file__).parent.parent


def run(*args: object) -> tuple[int, str, str]:
    """The real CLI: exit code, stdout and stderr apart."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def add_other_files(root: Path) -> None:
    """Files that are not media (three extensions and a name without one), a hidden one, a .tmp."""
    (root / "code").mkdir()
    for name in ("a.py", "b.py", "c.py", "table.xyz", "Makefile", "draft.tmp"):
        (root / "code" / name).write_text("x = 1\n", encoding="utf-8")
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes((DATA / "images" / "photo_640x480.jpg").read_bytes())
    (root / "notes" / ".hidden.txt").write_text("a hidden note", encoding="utf-8")


def test_the_summary_counts_skipped_files_by_extension_in_json_and_in_words(media_dir, lib_args):
    add_other_files(media_dir)
    summary = run_json("ingest", media_dir, "--exclude", "*.tmp", *lib_args)
    assert summary["skipped_by_extension"] == {
        ".py": 3, ".xyz": 1, "(none)": 1, ".tmp": 1, "(folder)": 1, ".txt": 1
    }  # fmt: skip
    assert summary["skipped"] == 8 and summary["added"] == 9
    (media_dir / "code" / "new.py").write_text("y = 2\n", encoding="utf-8")
    code, out, _ = run("ingest", media_dir, "--exclude", "*.tmp", *lib_args)
    assert code == 0
    assert out.splitlines()[-1] == "skipped 9: .py 4, (folder) 1, (none) 1, .tmp 1, .txt 1 and 1 more"


def test_verbose_ingest_lists_each_skipped_file_with_why(media_dir, lib_args):
    add_other_files(media_dir)
    os.mkfifo(media_dir / "code" / "pipe")  # passed over without being opened, and said so
    code, out, err = run("ingest", media_dir, "--exclude", "*.tmp", "-v", *lib_args)
    assert code == 0
    lines = err.splitlines()
    code_dir = media_dir / "code"
    assert f"  skipped: {code_dir / 'a.py'}: not a media type ibsearch reads (.py)" in lines
    assert f"  skipped: {code_dir / 'Makefile'}: not a media type ibsearch reads (no extension)" in lines
    assert f"  skipped: {code_dir / 'draft.tmp'}: excluded by --exclude '*.tmp'" in lines
    assert f"  skipped: {media_dir / '.cache'}/: a hidden folder, not entered (--hidden takes it)" in lines
    assert f"  skipped: {media_dir / 'notes' / '.hidden.txt'}: hidden (--hidden takes it)" in lines
    assert f"  skipped: {code_dir / 'pipe'}: not a regular file: a FIFO (named pipe)" in lines
    assert len([ln for ln in lines if ln.startswith("  skipped: ")]) == 9
    assert out.splitlines()[-1].startswith("skipped 9: .py 3, (none) 2")
    listed = run_json("ingest", media_dir, "-v", *lib_args)["skipped_files"]
    assert {"path": str(code_dir / "b.py"), "reason": "not a media type ibsearch reads (.py)"} in listed
    assert "skipped_files" not in run_json("ingest", media_dir, *lib_args)  # only asked for


def test_info_shows_what_the_last_run_skipped_and_failed(media_dir, lib_args):
    add_other_files(media_dir)
    shutil.copy(DATA / "bad" / "truncated.jpg", media_dir / "photos" / "bad.jpg")
    summary = run_json("ingest", media_dir, *lib_args)
    assert summary["failed_by_extension"] == {".jpg": 1} and len(summary["failed"]) == 1
    last = run_json("info", *lib_args)["last_ingest"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last["time"])
    assert last["skipped"] == 8 and last["skipped_by_extension"][".py"] == 3
    assert last["failed_by_extension"] == {".jpg": 1} and last["added"] == 9
    code, out, _ = run("info", *lib_args)
    line = next(ln for ln in out.splitlines() if ln.startswith("last run"))
    assert last["time"] in line and "added 9" in line and "; failed 1: .jpg 1;" in line
    assert line.endswith("; skipped 8: .py 3, (folder) 1, (none) 1, .tmp 1, .txt 1 and 1 more")


def test_a_file_named_on_the_command_line_that_is_not_indexed_is_always_reported(media_dir, lib_args):
    script = media_dir / "tool.py"
    script.write_text("print('hi')\n", encoding="utf-8")
    code, out, err = run("ingest", script, media_dir / "notes" / "dog.txt", *lib_args)
    assert code == 0 and "added 1" in out
    assert f"error: {script} was not indexed: not a media type ibsearch reads (.py)" in err.splitlines()
    summary = run_json("ingest", script, *lib_args)
    reason = "not a media type ibsearch reads (.py)"
    assert summary["not_indexed"] == [{"path": str(script), "reason": reason}]
    bad = media_dir / "bad.jpg"
    shutil.copy(DATA / "bad" / "truncated.jpg", bad)
    first = run_json("ingest", bad, *lib_args)
    assert [f["path"] for f in first["failed"]] == [str(bad)] and first["not_indexed"] == []
    code, out, err = run("ingest", bad, *lib_args)  # known bad now: not tried, but still said
    reason = first["failed"][0]["reason"]
    assert f"error: {bad} was not indexed: it failed before and is unchanged since: {reason}" in err
    assert run_json("ingest", media_dir / "notes" / "dog.txt", *lib_args)["not_indexed"] == []  # unchanged


def readme_types() -> dict[str, list[str]]:
    """The README's table of types: each row's type and the extensions its second column names."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = "| type | extensions | modality | extra |"
    assert head in readme, "the README's table of supported types is missing"
    rows = readme.split(head, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]
    table = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 4 and all(cells), f"a row of the types table needs 4 cells: {row}"
        table[cells[0]] = re.findall(r"`(\.[a-z0-9.]+)`", cells[1])
    return table


def test_the_readme_table_lists_every_extension_detect_knows_and_no_other():
    table = readme_types()
    listed = [ext for exts in table.values() for ext in exts]
    assert len(listed) == len(set(listed)), "an extension is in two rows of the README's table"
    assert set(listed) == set(EXTENSIONS)
    for kind in ("pictures", "sound", "video", "text", "depth", "IMU", "thermal"):
        assert any(kind in name for name in table), f"no row for {kind} in the README's table"
