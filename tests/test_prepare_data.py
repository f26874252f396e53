"""training.prepare_data: validated, atomic, idempotent staging of mnist.npz (data made here)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from training import prepare_data


def _npz(**overrides: np.ndarray) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=60).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=10).astype(np.uint8),
    }
    arrays.update(overrides)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.npz"
    path.write_bytes(_npz())
    return path


def test_stages_a_valid_file_with_its_checksum(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "data" / "mnist.npz"
    out.parent.mkdir()
    assert prepare_data.main(["--out", str(out), "--source", str(source)]) == 0
    data = out.read_bytes()
    assert data == source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert (out.parent / "mnist.npz.sha256").read_text() == f"{digest}  mnist.npz\n"
    with np.load(out) as archive:
        assert archive["x_train"].shape == (60, 28, 28)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_second_run_recognises_the_good_file(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mnist.npz"
    assert prepare_data.main(["--out", str(out), "--source", str(source)]) == 0
    source.unlink()  # a second run must not even need the source
    assert prepare_data.main(["--out", str(out), "--source", str(source)]) == 0
    assert "already prepared" in capsys.readouterr().out


# case -> what the error must say
BAD_SOURCES = {
    "not an archive": "is not a NumPy .npz archive",
    "missing keys": "lacks y_train, x_test, y_test",
    "wrong image shape": "x_train has shape (60, 32, 32)",
    "float pixels": "x_test is float32; expected uint8",
    "labels out of range": "labels from 0 to 12; expected 0-9",
    "label count mismatch": "y_train has shape (59,)",
}


def _bad(case: str) -> bytes:
    rng = np.random.default_rng(1)
    if case == "not an archive":
        return b"hello"
    if case == "missing keys":
        buffer = io.BytesIO()
        np.savez(buffer, x_train=np.zeros((1, 28, 28), np.uint8))
        return buffer.getvalue()
    if case == "wrong image shape":
        return _npz(x_train=np.zeros((60, 32, 32), np.uint8))
    if case == "float pixels":
        return _npz(x_test=rng.random((10, 28, 28)).astype(np.float32))
    if case == "labels out of range":
        return _npz(y_train=np.array([0] * 59 + [12], np.uint8))
    return _npz(y_train=np.zeros(59, np.uint8))


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_a_bad_source_never_replaces_a_good_file(
    tmp_path: Path, source: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mnist.npz"
    assert prepare_data.main(["--out", str(out), "--source", str(source)]) == 0
    (tmp_path / "mnist.npz.sha256").unlink()  # force the next run to re-stage
    good = out.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_bad(case))
    assert prepare_data.main(["--out", str(out), "--source", str(bad)]) == 2
    assert BAD_SOURCES[case] in capsys.readouterr().err
    assert out.read_bytes() == good


def test_missing_source_and_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        prepare_data.main(
            ["--out", str(tmp_path / "mnist.npz"), "--source", str(tmp_path / "no.npz")]
        )
        == 2
    )
    assert "does not exist; check the --source path" in capsys.readouterr().err
    assert (
        prepare_data.main(["--out", str(tmp_path / "missing" / "mnist.npz"), "--source", "x"]) == 2
    )
    assert "mount the datasets volume there" in capsys.readouterr().err


def test_checksum_mismatch_is_refused(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mnist.npz"
    assert (
        prepare_data.main(["--out", str(out), "--source", str(source), "--sha256", "0" * 64]) == 2
    )
    assert "not the expected" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving one good npz, for the download path."""
    (tmp_path / "mnist.npz").write_bytes(_npz())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_and_verifies_over_http(served: str, tmp_path: Path) -> None:
    out = tmp_path / "staged" / "mnist.npz"
    out.parent.mkdir()
    digest = hashlib.sha256(_npz()).hexdigest()
    assert (
        prepare_data.main(
            ["--out", str(out), "--source", f"{served}/mnist.npz", "--sha256", digest]
        )
        == 0
    )
    assert out.read_bytes() == _npz()


def test_unreachable_source_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 on loopback (discard) is closed here: the connection is refused at once.
    assert (
        prepare_data.main(
            ["--out", str(tmp_path / "m.npz"), "--source", "http://127.0.0.1:9/m.npz"]
        )
        == 2
    )
    assert "give a local copy with --source FILE" in capsys.readouterr().err
