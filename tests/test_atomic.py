import os

import pytest

from airnet_restore.atomic import atomic_write


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "f.txt", lambda p: p.write_text("hi"))
    finally:
        os.umask(old)
    assert path.read_text() == "hi"
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    (tmp_path / "f.txt").write_text("old")

    def fail(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "f.txt", fail)
    assert (tmp_path / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
