"""The row store: rows exactly as ``datasets`` returned them, read without ``datasets``.

What is proved here: the repr of every row read back is byte-identical to ``str(ds[i])`` (the real
rows, synthetic rows, and hypothesis-drawn rows of mixed column types); readers import neither
``datasets``, ``pyarrow`` nor ``pandas``; a store is reused exactly when its source is unchanged;
a killed writer leaves nothing that is later trusted, and concurrent builders build once; the
dataset errors of the loading path come through ``open_rows`` unchanged.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimicry.dataset import (
    DatasetChoice,
    DatasetError,
    DatasetSpec,
    RowStore,
    RowStoreError,
    choose_dataset,
    default_rows_dir,
    estimate_prompt_chars,
    load_rows,
    open_rows,
    select_indices,
    source_key,
    store_dataset,
    store_path,
)
from mimicry.synthetic import generate_rows, write_dataset
from tests.conftest import REPO_ROOT

HEAVY_MODULES = ("datasets", "pyarrow", "pandas")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of the building child: ``datasets``' cache in the test's folder."""
    return {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets")}


@pytest.fixture
def rows_dir(tmp_path: Path) -> Path:
    """The stores' folder."""
    return tmp_path / "rows"


def build(path: Path, rows_dir: Path, env: dict[str, str]) -> RowStore:
    return open_rows(DatasetSpec(str(path)), rows_dir=rows_dir, environ=env)


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    child = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return child.stdout


# -- rows exactly as datasets returned them ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_real_rows_read_back_byte_identical(
    request: pytest.FixtureRequest,
    real_rows_path: Path,
    rows_dir: Path,
    env: dict[str, str],
    suffix: str,
) -> None:
    source = real_rows_path if suffix == ".jsonl" else request.getfixturevalue("real_rows_csv")
    ds = load_rows(DatasetSpec(str(source)))
    with build(source, rows_dir, env) as store:
        assert len(store) == len(ds) == 32
        assert [repr(store[i]) for i in range(32)] == [str(ds[i]) for i in range(32)]
        assert store.ids == list(ds["id"])
        assert store.column_names == ds.column_names
        assert list(store.prompt_lengths) == [len(str(ds[i])) for i in range(32)]
        assert store.longest == 33_776
        assert store.value_types == []
        assert str(store[-1]) == str(ds[31])


def test_synthetic_rows_read_back_byte_identical(
    tmp_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    path = write_dataset(tmp_path / "synthetic.jsonl", n_rows=3000, seed=5)
    with build(path, rows_dir, env) as store:
        assert [repr(r) for r in store] == [str(r) for r in generate_rows(3000, seed=5)]


def test_the_bundled_sample_is_stored_like_the_shared_file(
    real_rows_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    with open_rows(choose_dataset("sample"), rows_dir=rows_dir, environ=env) as store:
        lines = real_rows_path.read_text().splitlines()
        assert [repr(r) for r in store] == [str(json.loads(line)) for line in lines]
        assert store.source["kind"] == "sample"
        assert store.path.name.startswith("sample-")


# mixed column types, as Arrow holds them and datasets gives them back
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def _column_types() -> dict[str, tuple[Any, st.SearchStrategy[Any]]]:
    import pyarrow as pa

    return {
        "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
        "float64": (pa.float64(), FLOATS),
        "float32": (pa.float32(), st.floats(width=32)),
        "bool": (pa.bool_(), st.booleans()),
        "string": (pa.string(), TEXT),
        "large_string": (pa.large_string(), TEXT),
        "binary": (pa.binary(), st.binary(max_size=10)),
        "list<int64>": (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=3)),
        "list<string>": (pa.list_(pa.string()), st.lists(TEXT, max_size=3)),
        "struct": (
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
            st.fixed_dictionaries({"a": st.none() | st.integers(0, 9), "b": st.none() | TEXT}),
        ),
        "list<struct>": (
            pa.list_(pa.struct([("x", pa.float64())])),
            st.lists(st.fixed_dictionaries({"x": FLOATS}), max_size=2),
        ),
        "timestamp[us]": (pa.timestamp("us"), st.datetimes()),
        "timestamp[us, UTC]": (
            pa.timestamp("us", tz="UTC"),
            st.datetimes(min_value=datetime.datetime(1900, 1, 1), timezones=st.just(datetime.UTC)),
        ),
        "date32": (pa.date32(), st.dates()),
        "decimal128(12, 3)": (
            pa.decimal128(12, 3),
            st.decimals(min_value=-(10**8), max_value=10**8, places=3, allow_nan=False),
        ),
        "duration[ms]": (pa.duration("ms"), st.integers(-(10**12), 10**12)),
    }


@st.composite
def mixed_tables(draw: st.DrawFn) -> Any:
    import pyarrow as pa

    types = _column_types()
    names = draw(st.lists(st.sampled_from(sorted(types)), min_size=1, max_size=6, unique=True))
    n_rows = draw(st.integers(1, 5))
    columns = {}
    for name in names:
        arrow_type, values = types[name]
        column = draw(st.lists(st.none() | values, min_size=n_rows, max_size=n_rows))
        columns[name] = pa.array(column, type=arrow_type)
    return pa.table(columns)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=mixed_tables())
def test_rows_of_mixed_column_types_read_back_byte_identical(table: Any, tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset(table)
    target = tmp_path / "mixed.rows"
    store_dataset(ds, target, key={"kind": "test"}, spec=DatasetSpec("mixed"))
    with RowStore.open(target) as store:
        assert [repr(r) for r in store] == [str(ds[i]) for i in range(len(ds))]
        assert list(store.prompt_lengths) == [len(str(ds[i])) for i in range(len(ds))]
        assert store.column_names == ds.column_names


def test_a_value_of_another_librarys_type_is_named_in_the_store(tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa

    # datasets gives timestamp[ns] values back as pandas.Timestamp: reading them needs pandas
    table = pa.table(
        {
            "t": pa.array([1, None], pa.timestamp("ns")),
            "d": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
        }
    )
    ds = datasets.Dataset(table)
    target = tmp_path / "typed.rows"
    store_dataset(ds, target, key={"kind": "test"}, spec=DatasetSpec("typed"))
    with RowStore.open(target) as store:
        assert store.value_types == ["decimal.Decimal", "pandas.Timestamp"]
        assert [repr(r) for r in store] == [str(ds[0]), str(ds[1])]


def test_decoded_features_are_stored_as_datasets_decodes_them(tmp_path: Path) -> None:
    import io

    import datasets
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(png, "PNG")
    features = datasets.Features(
        {"id": datasets.Value("int64"), "prompt": datasets.Value("string"), "img": datasets.Image()}
    )
    ds = datasets.Dataset.from_dict(
        {"id": [1], "prompt": ["p"], "img": [{"bytes": png.getvalue(), "path": None}]},
        features=features,
    )
    target = tmp_path / "images.rows"
    store_dataset(ds, target, key={"kind": "test"}, spec=DatasetSpec("images"))
    with RowStore.open(target) as store:
        row = store[0]
        # the repr of an image names its address, which differs between two ds[0] as well
        assert re.sub(r" at 0x\w+", "", repr(row)) == re.sub(r" at 0x\w+", "", str(ds[0]))
        assert row["img"].tobytes() == ds[0]["img"].tobytes()
        assert store.value_types == ["PIL.PngImagePlugin.PngImageFile"]


def test_floats_keep_their_exact_bits(tmp_path: Path, rows_dir: Path, env: dict[str, str]) -> None:
    path = tmp_path / "floats.jsonl"
    values = [0.1, -0.0, 1e308, 5e-324, float("inf"), float("-inf")]
    lines = [json.dumps({"id": i, "prompt": "p", "x": v}) + "\n" for i, v in enumerate(values)]
    path.write_text("".join(lines))
    with build(path, rows_dir, env) as store:
        read = [store[i]["x"] for i in range(len(values))]
    assert [math.copysign(1, v) for v in read] == [math.copysign(1, v) for v in values]
    assert read == values


# -- readers import nothing heavy ----------------------------------------------------------------

READER = """
import json, sys
from pathlib import Path
from mimicry.dataset import RowStore, DatasetSpec, choose_dataset, open_rows
kind, target, rows_dir = sys.argv[1:4]
if kind == "worker":  # an xdist worker: given only the store's path
    store = RowStore.open(target)
else:  # the controller on a rerun: the source, whose store exists
    spec = choose_dataset(target) if target == "sample" else DatasetSpec(target)
    store = open_rows(spec, rows_dir=Path(rows_dir))
rows = [store[i] for i in range(len(store))]
print(json.dumps({
    "heavy": sorted(m for m in ("datasets", "pyarrow", "pandas") if m in sys.modules),
    "n": len(rows), "ids": store.ids[:2], "longest": store.longest_of(range(len(store))),
    "path": str(store.path),
}))
"""


@pytest.mark.parametrize("source", ["file", "sample"])
def test_readers_import_neither_datasets_pyarrow_nor_pandas(
    real_rows_path: Path, rows_dir: Path, env: dict[str, str], source: str
) -> None:
    spec = DatasetSpec(str(real_rows_path) if source == "file" else "sample")
    with open_rows(spec, rows_dir=rows_dir, environ=env) as store:
        target = str(store.path)

    for kind, given_path in (("worker", target), ("controller", spec.id_or_path)):
        out = json.loads(run_python(READER, kind, given_path, str(rows_dir)))
        assert out == {
            "heavy": [],
            "n": 32,
            "ids": [30192, 53567],
            "longest": 33_776,
            "path": target,
        }, kind


# -- reuse, keys and the cache folder ------------------------------------------------------------


def test_a_store_is_reused_while_its_file_is_unchanged(
    tmp_path: Path, rows_dir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": "b"}\n')
    first = build(path, rows_dir, env)
    first.close()

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store was rebuilt")

    import mimicry.dataset

    with monkeypatch.context() as patch:
        patch.setattr(mimicry.dataset, "_build_in_child", no_build)
        with build(path, rows_dir, env) as again:
            assert again.path == first.path

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: a new key
    with build(path, rows_dir, env) as touched:
        assert touched.path != first.path
    path.write_text('{"id": 1, "prompt": "changed"}\n')
    with build(path, rows_dir, env) as changed:
        assert changed[0] == {"id": 1, "prompt": "changed"}
        assert len(changed) == 1


def test_the_key_names_the_source_and_its_versions(real_rows_path: Path, tmp_path: Path) -> None:
    from importlib.metadata import version

    key = source_key(DatasetSpec(str(real_rows_path)))
    stat = real_rows_path.stat()
    assert key == {
        "kind": "file",
        "path": str(real_rows_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "builder": "json",
        "split": "train",
        "datasets": version("datasets"),
        "format": 1,
    }
    sample = source_key(DatasetSpec("sample"))
    assert sample["sha256"] == "a496ef40f316f76b94f51bc9bd3bee1372e2acc1943649ec03570fb6f3a483fd"
    assert sample["package"]
    assert sample["datasets"] == version("datasets")
    assert store_path(tmp_path, key).name.startswith("file-train-first32-")
    assert store_path(tmp_path, key) != store_path(tmp_path, {**key, "split": "test"})


def test_the_default_folder_follows_xdg() -> None:
    assert default_rows_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/mimicry-evals/rows")
    assert default_rows_dir({}) == Path("~/.cache/mimicry-evals/rows").expanduser()


# -- atomic and concurrent writing ---------------------------------------------------------------

KILLED_WRITER = """
import sys
from pathlib import Path
from mimicry.dataset import DatasetSpec, source_key, store_path, write_row_store
spec = DatasetSpec(sys.argv[1])
key = source_key(spec)
target = store_path(Path(sys.argv[2]), key)
target.parent.mkdir(parents=True, exist_ok=True)
def rows():
    for i in range(3):
        yield {"id": i, "prompt": "x" * 1000}
    print("writing", flush=True)
    sys.stdin.read()  # blocks until the test kills this process
write_row_store(rows(), target, key=key, columns=["id", "prompt"], ids=lambda i, row: i)
"""


def test_a_killed_writer_leaves_no_store_that_is_later_trusted(
    tmp_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 7, "prompt": "a"}\n')
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), str(rows_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        for stream in (writer.stdin, writer.stdout):
            if stream is not None:
                stream.close()
    target = store_path(rows_dir, source_key(DatasetSpec(str(path))))
    leftovers = list(rows_dir.glob(f".{target.name}.*.tmp"))
    assert not target.exists()
    assert len(leftovers) == 1
    with pytest.raises(RowStoreError, match="no such file"):
        RowStore.open(target)

    with build(path, rows_dir, env) as store:
        assert store.path == target
        assert [store[0]] == [{"id": 7, "prompt": "a"}]
    assert not leftovers[0].exists()  # cleared by the next builder


@pytest.mark.parametrize("damage", ["garbage", "cut-in-half", "empty"])
def test_a_damaged_store_is_refused_and_rebuilt(
    real_rows_path: Path, rows_dir: Path, env: dict[str, str], damage: str
) -> None:
    with build(real_rows_path, rows_dir, env) as store:
        target, whole = store.path, store.path.read_bytes()
    target.write_bytes(
        {"garbage": b"\x80not a store" * 50, "cut-in-half": whole[: len(whole) // 2], "empty": b""}[
            damage
        ]
    )

    with pytest.raises(RowStoreError, match=r"^row store '.*' is damaged \(.*\); delete it"):
        RowStore.open(target)
    with build(real_rows_path, rows_dir, env) as rebuilt:
        assert rebuilt.path == target
        assert len(rebuilt) == 32
    assert target.read_bytes() == whole


CONCURRENT_BUILDER = """
import json, os, sys
from pathlib import Path
from mimicry.dataset import DatasetSpec, open_rows
store = open_rows(DatasetSpec(sys.argv[1]), rows_dir=Path(sys.argv[2]))
# the inode of the file this process mapped ("(deleted)" if it was replaced since)
with open("/proc/self/maps") as maps:
    mapped = {line.split()[4] for line in maps if line.rstrip().endswith(str(store.path))}
print(json.dumps({"path": str(store.path), "inodes": sorted(mapped),
                  "rows": [repr(r) for r in store]}))
"""


def test_concurrent_builders_build_once_and_agree(
    tmp_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    path = write_dataset(tmp_path / "rows.jsonl", n_rows=500, seed=1)
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_BUILDER, str(path), str(rows_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = []
    try:
        for builder in builders:
            out, err = builder.communicate(timeout=300)
            assert builder.returncode == 0, err[-2000:]
            outputs.append(json.loads(out))
    finally:
        for builder in builders:
            builder.kill()
            builder.wait()

    paths = {o["path"] for o in outputs}
    assert len(paths) == 1
    target = Path(paths.pop())
    # one build: every process mapped the same file, the one still in place
    assert all(o["inodes"] == [str(target.stat().st_ino)] for o in outputs)
    assert all(o["rows"] == [str(r) for r in generate_rows(500, seed=1)] for o in outputs)
    assert list(rows_dir.glob(".*.tmp")) == []


# -- the dataset errors, through the new path ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.jsonl", b'{"id": 1, "question": "hi"}\n', r"missing column\(s\) \['prompt'\]"),
        ("rows.csv", b"id,prompt\n", "the dataset has no rows$"),
        ("rows.jsonl", b"{not json\n", "cannot read the file"),
        (
            "rows.jsonl",
            b'null\n{"id": 1, "prompt": "a"}\n',  # apache/arrow#47409: kills the reader
            r"the file crashed the Arrow reader \(signal \d+, SIG\w+\); check that every line",
        ),
        ("rows.txt", b"id,prompt\n", r"unsupported file type '.txt'; use one of"),
    ],
    ids=["missing-column", "empty", "unreadable-file", "pyarrow-crash", "unsupported-type"],
)
def test_dataset_errors_come_through_open_rows(
    tmp_path: Path, rows_dir: Path, env: dict[str, str], name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DatasetError, match=message) as caught:
        build(path, rows_dir, env)
    assert str(caught.value).startswith(f"--dataset {str(path)!r}: ")
    assert "\n" not in str(caught.value)
    assert list(rows_dir.glob("*.rows")) == []


def test_an_unreadable_row_is_an_error_only_when_it_is_read(
    tmp_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(
        b'{"id": 1, "prompt": "fine"}\n{"id": 2, "prompt": "\xff\xfe"}\n{"id": 3, "prompt": "ok"}\n'
    )
    with build(path, rows_dir, env) as store:
        assert store.ids == [1, 2, 3]
        assert store[0] == {"id": 1, "prompt": "fine"}
        assert store[2] == {"id": 3, "prompt": "ok"}
        expected = (
            rf"^--dataset {re.escape(repr(str(path)))}: row 1 cannot be read "
            r"\(UnicodeDecodeError: .*\); fix or drop that row$"
        )
        with pytest.raises(DatasetError, match=expected):
            store[1]
        with pytest.raises(DatasetError, match=expected):
            estimate_prompt_chars(store, [0, 1, 2])
        assert estimate_prompt_chars(store, [0, 2]) == len(str({"id": 1, "prompt": "fine"}))
        assert list(store.unreadable) == [1]


def test_selection_works_on_the_stores_ids(
    real_rows_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    with build(real_rows_path, rows_dir, env) as store:
        picked = select_indices(
            store.ids, samples=None, samples_given=False, seed=0, sample_ids=["53567", "30192"]
        )
        assert picked == [0, 1]
        assert store.longest_of(picked) == max(len(str(store[0])), len(str(store[1])))
        with pytest.raises(DatasetError, match=r"--sample-ids: 1 id\(s\) not in the dataset"):
            select_indices(store.ids, samples=1, samples_given=True, seed=0, sample_ids=["9"])


def test_open_rows_of_a_named_choice_keeps_its_spec(
    real_rows_path: Path, rows_dir: Path, env: dict[str, str]
) -> None:
    choice = DatasetChoice(DatasetSpec(str(real_rows_path)))
    with open_rows(choice, rows_dir=rows_dir, environ=env) as store:
        assert store.source["path"] == str(real_rows_path.resolve())
