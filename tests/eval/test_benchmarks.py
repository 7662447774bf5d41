"""Benchmark data: the places it is found, in order (the copies shipped in the package among them); the pinned
checksums; problem shapes."""

from __future__ import annotations

import gzip
import hashlib
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


@pytest.fixture
def nothing_shipped(monkeypatch, tmp_path):
    """As if phitools shipped no benchmark files (to reach the later steps of the lookup)."""
    empty = tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setattr(bm, "shipped_dir", lambda: empty)
    return empty


SHIPPED = bm.shipped_dir()


def _shipped_content(key: str) -> bytes:
    return gzip.decompress((SHIPPED / bm.FILES[key].shipped).read_bytes())


def test_shipped_files_match_their_pins():
    readme = (bm.shipped_dir() / "README.md").read_text()
    for key, df in bm.FILES.items():
        p = bm.shipped_dir() / df.shipped
        assert p.is_file() and p.suffix == ".gz", key
        assert hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() == df.sha256, key
        assert df.sha256 in readme and df.shipped in readme, key  # the README states what is shipped
    for lic in ("MIT-openai-human-eval.txt", "Apache-2.0.txt"):
        assert (bm.shipped_dir() / "licenses" / lic).stat().st_size > 1000
    assert "creativecommons.org/licenses/by/4.0" in readme


def test_every_named_benchmark_works_offline_from_the_shipped_copy(no_env):
    sizes = {"humaneval": 164, "humaneval+": 164, "mbpp": 500, "mbpp-sanitized": 257, "mbpp+": 378}
    for name in bm.BENCHMARKS:
        b = bm.load_benchmark(name, allow_download=False)
        assert b.pinned and len(b.problems) == sizes[name], name
        assert Path(b.source).parent.parent == bm.shipped_dir(), b.source


def test_a_damaged_shipped_copy_is_refused(no_env, monkeypatch):
    damaged = no_env / "shipped"
    shutil.copytree(bm.shipped_dir(), damaged)
    f = damaged / bm.FILES["mbpp"].shipped
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes()).replace(b"assert", b"assert not", 1)))
    monkeypatch.setattr(bm, "shipped_dir", lambda: damaged)
    with pytest.raises(DataError, match="shipped with phitools does not match"):
        bm.load_benchmark("mbpp", allow_download=False)
    assert bm.load_benchmark("humaneval", allow_download=False).pinned  # the others are still fine


def test_named_benchmarks_load():
    he = bm.load_benchmark("humaneval")
    assert len(he.problems) == 164 and he.pinned
    p = he.problems[0]
    assert p.task_id == "HumanEval/0" and p.entry_point == "has_close_elements" and p.reference
    mbpp = bm.load_benchmark("mbpp")
    ids = [int(p.task_id.split("/")[1]) for p in mbpp.problems]
    assert len(ids) == 500 and min(ids) == 11 and max(ids) == 510 and mbpp.pinned
    assert mbpp.problems[0].prompt.startswith('"""\n') and "assert " in mbpp.problems[0].prompt
    san = bm.load_benchmark("mbpp-sanitized")
    assert len(san.problems) == 257
    assert any(p.test_imports for p in san.problems)


def test_mbpp_remote_names_come_from_the_reference():
    by = bm.load_benchmark("mbpp").by_id()
    assert by["Mbpp/126"].remote_names() == ["sum"]  # a function named like a builtin is the candidate's
    assert "Node" in by["Mbpp/367"].remote_names() or "is_tree_balanced" in by["Mbpp/367"].remote_names()


def test_data_dir_then_env_then_cache_then_shipped(no_env, monkeypatch):
    plain = _shipped_content("humaneval")
    cache = no_env / "cache" / "phitools" / "data" / "humaneval"
    cache.mkdir(parents=True)
    (cache / "HumanEval.jsonl").write_bytes(plain)
    given = no_env / "given"
    (given / "humaneval").mkdir(parents=True)
    (given / "humaneval" / "HumanEval.jsonl").write_bytes(plain)
    path, _, pinned = bm.locate("humaneval", given, allow_download=False)
    assert path == given / "humaneval" / "HumanEval.jsonl" and pinned
    other = no_env / "other"
    (other / "humaneval").mkdir(parents=True)
    with gzip.open(other / "humaneval" / "HumanEval.jsonl.gz", "wb") as f:
        f.write(plain)
    monkeypatch.setenv("PHITOOLS_DATA", str(other))
    path, content, pinned = bm.locate("humaneval", None, allow_download=False)
    assert path == other / "humaneval" / "HumanEval.jsonl.gz" and pinned  # .gz accepted, checksum of the content
    monkeypatch.delenv("PHITOOLS_DATA")
    path, _, _ = bm.locate("humaneval", None, allow_download=False)
    assert path == cache / "HumanEval.jsonl"  # a copy in the cache wins over the shipped one
    (cache / "HumanEval.jsonl").unlink()
    path, _, pinned = bm.locate("humaneval", None, allow_download=False)
    assert path == bm.shipped_dir() / "humaneval" / "HumanEval.jsonl.gz" and pinned
    # a data folder of gzipped copies (the shipped folder itself is one) works for every file
    for key in bm.FILES:
        path, _, pinned = bm.locate(key, bm.shipped_dir(), allow_download=False)
        assert pinned and path == bm.shipped_dir() / bm.FILES[key].shipped


def test_installed_package_then_not_found(no_env, nothing_shipped):
    path, content, pinned = bm.locate("humaneval", None, allow_download=False)
    assert path.name == "HumanEval.jsonl.gz" and "human_eval" in str(path) and pinned
    with pytest.raises(DataError, match="not found"):
        bm.locate("mbpp", None, allow_download=False)


def test_changed_file_is_used_with_a_warning(tmp_path):
    d = tmp_path / "d" / "mbpp"
    d.mkdir(parents=True)
    lines = _shipped_content("mbpp").splitlines(keepends=True)
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


def test_download_checks_the_sha256(no_env, nothing_shipped, monkeypatch):
    served = no_env / "www"
    (served / "mbpp").mkdir(parents=True)
    (served / "mbpp" / "mbpp.jsonl").write_bytes(_shipped_content("mbpp"))
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
    f.write_text(
        '{"task_id": "x/0", "prompt": "def f():\\n", "test": "def check(c):\\n    assert c() == 1\\n", '
        '"entry_point": "f", "canonical_solution": "    return 1\\n"}\n{"task_id": "x/1", "prompt": "p"}\n'
    )
    with pytest.raises(DataError) as e:
        bm.load_benchmark(str(f))
    assert "mine.jsonl:2" in str(e.value) and "'test'" in str(e.value)
    f.write_text(f.read_text().splitlines()[0] + "\n")
    b = bm.load_benchmark(str(f))
    assert [p.task_id for p in b.problems] == ["x/0"] and b.problems[0].reference
    with pytest.raises(UsageError):
        bm.load_benchmark("no-such-benchmark")


def test_wheel_and_sdist_carry_the_shipped_files():
    """pyproject's package-data globs (setuptools resolves them like glob.glob from the package) cover every
    shipped benchmark file, its README and its licences."""
    import glob
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    repo = Path(__file__).resolve().parents[2]
    pkg = repo / "src" / "phitools"
    if SHIPPED != pkg / "data" / "benchmarks":
        pytest.skip("phitools is not imported from this checkout")
    globs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["phitools"]
    covered = {Path(p) for g in globs for p in glob.glob(g, root_dir=pkg) if (pkg / p).is_file()}
    shipped = {p.relative_to(pkg) for p in SHIPPED.rglob("*") if p.is_file()}
    assert shipped and shipped <= covered, sorted(map(str, shipped - covered))
    assert {Path("data/benchmarks") / df.shipped for df in bm.FILES.values()} <= shipped
