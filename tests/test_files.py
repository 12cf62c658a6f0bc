"""Atomic writes: all or nothing, with ordinary permissions."""

import os
import stat

import pytest

from mmt.files import replace_bytes, write_atomic, write_text_atomic


def test_write_text_atomic_gives_the_permissions_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a" / "x.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.txt"]


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "x.txt", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_replace_bytes_replaces_through_a_temporary_with_the_permissions_of_a_plain_write(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"old")
    (tmp_path / ".x.npy.tmp").write_bytes(b"left by a killed run")
    old = os.umask(0o022)
    try:
        replace_bytes(path, b"new" * 100_000)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_save_figure_writes_a_png_atomically_and_closes_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmt.files import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "plots" / "line.png")
    assert path == tmp_path / "plots" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.fignum_exists(fig.number) is False
    assert sorted(p.name for p in path.parent.iterdir()) == ["line.png"]  # no temp file left

    fig = plt.figure()
    fig.savefig = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "plots" / "line.png")
    assert plt.fignum_exists(fig.number) is False
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the earlier file is left as it was
    assert sorted(p.name for p in path.parent.iterdir()) == ["line.png"]
