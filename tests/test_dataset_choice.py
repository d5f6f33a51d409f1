"""Choosing the dataset: the named one or an error, else the hub dataset, else the bundled rows.

The hub is never contacted: ``HF_ENDPOINT`` points at a local listener (reachable), a closed port
(refused) or an ``.invalid`` host (DNS fails), and the Hugging Face cache is a temporary folder,
filled in one test with a prepared copy laid out as ``datasets`` leaves a hub dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path

import pytest

from mimicry.dataset import (
    BUNDLED_SAMPLE_PARTS,
    BUNDLED_SAMPLE_ROWS,
    HUB_PROBE_TIMEOUT_S,
    DatasetChoice,
    DatasetError,
    DatasetSpec,
    RowStore,
    cached_hub_copy,
    choose_dataset,
    hub_datasets_cache,
    hub_endpoint,
    hub_unreachable,
    load_rows,
    open_rows,
)
from mimicry.settings import DEFAULT_DATASET
from tests.conftest import REPO_ROOT, SHARED_SAMPLE_DIR

HUB_VARIABLES = (
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_CACHE",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel completes them; nobody answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def env(tmp_path: Path, closed_port: int) -> dict[str, str]:
    """An environment with an empty Hugging Face cache and an unreachable hub (refused)."""
    base = {k: v for k, v in os.environ.items() if k not in HUB_VARIABLES}
    return {
        **base,
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port}",
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }


def fake_hub_copy(cache: Path, dataset_id: str, rows: Path, split: str = "train") -> Path:
    """Lay ``rows`` out in ``cache`` as ``datasets`` leaves a prepared hub dataset."""
    import datasets

    datasets.disable_progress_bars()
    prepared = datasets.load_dataset(
        "json", data_files=str(rows), split="train", cache_dir=str(cache.parent / "prep")
    )
    source = Path(prepared.cache_files[0]["filename"]).parent
    namespace, name = dataset_id.split("/")
    target = cache / f"{namespace}___{name}" / "default" / "0.0.0" / "0123abcd"
    target.mkdir(parents=True)
    shutil.copy(source / "json-train.arrow", target / f"{name}-{split}.arrow")
    info = json.loads((source / "dataset_info.json").read_text())
    info.update(builder_name="parquet", dataset_name=name)
    info["splits"] = {split: {**info["splits"]["train"], "name": split, "dataset_name": name}}
    (target / "dataset_info.json").write_text(json.dumps(info))
    return target


# -- the bundled rows -----------------------------------------------------------------------------


def test_the_bundled_rows_are_the_shared_rows_byte_for_byte() -> None:
    bundled = files("mimicry").joinpath(*BUNDLED_SAMPLE_PARTS)
    shared = SHARED_SAMPLE_DIR / "train-first32.jsonl"
    if not shared.is_file():  # a clone on its own; in CI ../shared is there (and skips fail)
        pytest.skip(f"no shared copy to compare with at {shared}")

    assert bundled.read_bytes() == shared.read_bytes()
    assert len(bundled.read_bytes().splitlines()) == BUNDLED_SAMPLE_ROWS


def test_the_bundled_rows_carry_their_provenance_and_licence() -> None:
    note = files("mimicry").joinpath(*BUNDLED_SAMPLE_PARTS[:-1], "README.md").read_text()

    assert "Apache License, Version 2.0" in note
    assert "lmsys/lmsys-arena-human-preference-55k" in note
    assert "a496ef40f316f76b94f51bc9bd3bee1372e2acc1943649ec03570fb6f3a483fd" in note


def test_the_package_data_section_ships_the_bundled_rows_and_their_note() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["mimicry"]
    package = REPO_ROOT / "src" / "mimicry"
    shipped = {p.relative_to(package) for g in globs for p in package.glob(g)}

    folder = Path(*BUNDLED_SAMPLE_PARTS[:-1])
    assert {Path(*BUNDLED_SAMPLE_PARTS), folder / "README.md"} <= shipped


def test_load_rows_reads_the_bundled_rows_like_any_local_file(real_rows_path: Path) -> None:
    bundled = load_rows(DatasetSpec("sample"))
    local = load_rows(DatasetSpec(str(real_rows_path)))

    assert [str(r) for r in bundled] == [str(r) for r in local]


# -- named datasets: used, or an error -----------------------------------------------------------


def test_sample_selects_the_bundled_rows_without_a_probe(env: dict[str, str]) -> None:
    env["HF_ENDPOINT"] = "http://must-not-be-probed.invalid"
    choice = choose_dataset("sample", "train", env)

    assert choice == DatasetChoice(DatasetSpec("sample"), bundled=True, note=None)
    assert "32 rows" in choice.label


def test_the_bundled_rows_have_only_a_train_split(env: dict[str, str]) -> None:
    with pytest.raises(DatasetError, match=r"--dataset-split 'test': the bundled sample .*'train'"):
        choose_dataset("sample", "test", env)


def test_a_named_file_is_that_file_even_when_missing(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    choice = choose_dataset(str(missing), "train", env)

    assert choice == DatasetChoice(DatasetSpec(str(missing)))
    with pytest.raises(DatasetError, match=r"^--dataset '.*nope.jsonl': no such file$"):
        open_rows(choice, rows_dir=tmp_path / "rows", environ=env)


def test_a_named_hub_dataset_that_cannot_be_reached_is_an_error_not_a_fallback(
    env: dict[str, str],
) -> None:
    with pytest.raises(DatasetError) as caught:
        choose_dataset("someone/some-dataset", "train", env)

    message = str(caught.value)
    assert message.startswith("--dataset 'someone/some-dataset': the Hugging Face hub (127.0.0.1)")
    assert "cannot be reached (Connection refused)" in message
    assert "--dataset sample" in message
    assert "--dataset path/to/train.csv" in message
    assert "\n" not in message


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_and_not_cached_is_one_line_that_says_what_to_do(
    env: dict[str, str], variable: str
) -> None:
    env[variable] = "1"
    with pytest.raises(DatasetError) as caught:
        choose_dataset(DEFAULT_DATASET, "train", env)

    message = str(caught.value)
    assert message == (
        f"--dataset {DEFAULT_DATASET!r}: {variable}=1 is set and the dataset (split 'train') is "
        f"not in the Hugging Face cache ({env['HF_DATASETS_CACHE']}); unset {variable} to "
        "download it, or pass a local file instead (--dataset path/to/train.csv, or "
        ".jsonl/.json/.parquet) or the 32 bundled rows (--dataset sample)"
    )
    assert "None" not in message


def test_load_rows_gives_the_same_offline_message(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(DatasetError, match=r"HF_HUB_OFFLINE=1 is set .*unset HF_HUB_OFFLINE") as e:
        load_rows(DatasetSpec(DEFAULT_DATASET))
    assert "None" not in str(e.value)


def test_a_named_hub_dataset_answering_is_used(env: dict[str, str], listening_port: int) -> None:
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{listening_port}"

    assert choose_dataset("someone/some-dataset", "test", env) == DatasetChoice(
        DatasetSpec("someone/some-dataset", "test")
    )


# -- the default ---------------------------------------------------------------------------------


def test_no_dataset_and_a_hub_that_answers_is_the_hub_dataset(
    env: dict[str, str], listening_port: int
) -> None:
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{listening_port}"

    assert choose_dataset(None, "train", env) == DatasetChoice(DatasetSpec(DEFAULT_DATASET))


def test_no_dataset_and_no_hub_is_the_bundled_sample_with_one_note(env: dict[str, str]) -> None:
    env["HF_ENDPOINT"] = "https://hub.invalid"  # DNS fails (RFC 6761)
    started = time.monotonic()
    choice = choose_dataset(None, "train", env)
    elapsed = time.monotonic() - started

    assert choice.spec == DatasetSpec("sample")
    assert choice.bundled
    assert not choice.hub_offline
    assert choice.note is not None
    assert "\n" not in choice.note
    assert choice.note.startswith(
        "no --dataset given and the Hugging Face hub (hub.invalid) cannot be reached ("
    )
    assert choice.note.endswith(
        "using the bundled sample, the first 32 rows of lmsys/lmsys-arena-human-preference-55k "
        "(--dataset sample); name a dataset with --dataset to use another"
    )
    assert elapsed < HUB_PROBE_TIMEOUT_S + 0.5  # the probe's own bound, plus slack


def test_no_dataset_offline_and_not_cached_is_the_bundled_sample(env: dict[str, str]) -> None:
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_ENDPOINT"] = "http://must-not-be-probed.invalid"
    choice = choose_dataset(None, "train", env)

    assert choice.bundled
    assert choice.note == (
        f"no --dataset given, HF_HUB_OFFLINE=1 is set and {DEFAULT_DATASET} is not in the Hugging "
        f"Face cache ({env['HF_DATASETS_CACHE']}): using the bundled sample, the first 32 rows of "
        "lmsys/lmsys-arena-human-preference-55k (--dataset sample); name a dataset with "
        "--dataset to use another"
    )


def test_no_dataset_no_hub_and_another_split_is_an_error(env: dict[str, str]) -> None:
    with pytest.raises(DatasetError, match=r"--dataset-split 'test': the bundled sample \(the hub"):
        choose_dataset(None, "test", env)


def test_a_cached_hub_copy_is_read_offline_when_the_hub_cannot_be_reached(
    env: dict[str, str], tmp_path: Path, real_rows_path: Path
) -> None:
    cache = hub_datasets_cache(env)
    copy = fake_hub_copy(cache, DEFAULT_DATASET, real_rows_path)

    assert cached_hub_copy(DEFAULT_DATASET, "train", env) == copy
    assert cached_hub_copy(DEFAULT_DATASET, "test", env) is None
    for given in (None, DEFAULT_DATASET):
        choice = choose_dataset(given, "train", env)
        assert choice.spec == DatasetSpec(DEFAULT_DATASET)
        assert choice.hub_offline
        assert choice.note is not None
        assert choice.note.startswith("the Hugging Face hub (127.0.0.1) cannot be reached (")
        assert choice.note.endswith(f"using the cached copy of the dataset in {copy}")
    # with HF_HUB_OFFLINE set: the cache, and nothing to say
    offline = choose_dataset(None, "train", {**env, "HF_HUB_OFFLINE": "1"})
    assert offline == DatasetChoice(DatasetSpec(DEFAULT_DATASET), hub_offline=True)

    # and datasets agrees: the child reads it offline (no retries against the dead hub)
    store = open_rows(choice, rows_dir=tmp_path / "rows", environ=env)
    with store, real_rows_path.open() as fh:
        assert len(store) == 32
        assert [repr(r) for r in store] == [str(json.loads(line)) for line in fh]
        assert store.source["kind"] == "hub"
        assert store.source["id"] == DEFAULT_DATASET
        assert isinstance(store, RowStore)


# -- the probe ------------------------------------------------------------------------------------


def test_the_probe_is_bounded_even_when_connecting_hangs(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hanging_connect(*args: object, **kwargs: object) -> socket.socket:
        entered.set()
        release.wait()
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    try:
        assert hub_unreachable(env, 0.2) == "no answer within 0.2 s"
        assert entered.is_set()
    finally:
        release.set()


def test_the_probe_reports_refused_and_unresolvable_hosts(
    env: dict[str, str], listening_port: int
) -> None:
    assert hub_unreachable(env, 2.0) == "Connection refused"
    assert hub_unreachable({**env, "HF_ENDPOINT": "https://hub.invalid"}, 2.0) is not None
    assert (
        hub_unreachable({**env, "HF_ENDPOINT": f"http://127.0.0.1:{listening_port}"}, 2.0) is None
    )


class AnsweringServer:
    """A loopback server that answers every connection with ``reply`` and closes it; it keeps
    what each connection sent first."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.received: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(4096))
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept (close alone does not, on Linux)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


@pytest.fixture
def answering() -> Iterator[Callable[[bytes], AnsweringServer]]:
    """Start loopback servers answering with given bytes; all closed at the end of the test."""
    servers: list[AnsweringServer] = []

    def start(reply: bytes) -> AnsweringServer:
        servers.append(AnsweringServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_probe_goes_through_the_proxy_unless_no_proxy_exempts_the_hub(
    env: dict[str, str], answering: Callable[[bytes], AnsweringServer]
) -> None:
    proxy = answering(b"HTTP/1.1 200 Connection established\r\n\r\n")
    env["HF_ENDPOINT"] = "http://hub.invalid"
    env["HTTP_PROXY"] = f"http://user:p%40ss@127.0.0.1:{proxy.port}"

    endpoint = hub_endpoint(env)
    assert endpoint.proxy == ("127.0.0.1", proxy.port)
    assert endpoint.where == f"hub.invalid through the proxy 127.0.0.1:{proxy.port}"
    assert hub_unreachable(env, 2.0) is None
    request = proxy.received[0].decode()
    assert request.startswith("CONNECT hub.invalid:80 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in request  # user:p@ss
    assert "p%40ss" not in endpoint.where
    assert hub_endpoint({**env, "NO_PROXY": "localhost,.invalid"}).proxy is None
    assert hub_endpoint({**env, "no_proxy": "*"}).proxy is None


def test_a_proxy_that_refuses_the_tunnel_means_unreachable(
    env: dict[str, str], answering: Callable[[bytes], AnsweringServer]
) -> None:
    proxy = answering(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    env["HF_ENDPOINT"] = "https://hub.invalid"
    env["HTTPS_PROXY"] = f"127.0.0.1:{proxy.port}"

    assert hub_unreachable(env, 2.0) == (
        "the proxy refused the tunnel (HTTP/1.1 407 Proxy Authentication Required)"
    )


def test_an_https_hub_must_complete_a_tls_handshake(
    env: dict[str, str], answering: Callable[[bytes], AnsweringServer], listening_port: int
) -> None:
    # some networks accept every TCP connection, then reset or answer something else
    not_tls = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    reason = hub_unreachable({**env, "HF_ENDPOINT": f"https://127.0.0.1:{not_tls.port}"}, 2.0)
    assert reason is not None
    assert reason.startswith("TLS handshake failed")
    silent = hub_unreachable({**env, "HF_ENDPOINT": f"https://127.0.0.1:{listening_port}"}, 0.3)
    assert silent == "no answer within 0.3 s"


def test_the_cache_location_follows_datasets_rule(tmp_path: Path) -> None:
    assert hub_datasets_cache({"HF_DATASETS_CACHE": "/a"}) == Path("/a")
    assert hub_datasets_cache({"HF_HOME": "/h"}) == Path("/h/datasets")
    assert hub_datasets_cache({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/datasets")
    assert hub_datasets_cache({}) == Path("~/.cache/huggingface/datasets").expanduser()


def test_choose_never_imports_datasets(env: dict[str, str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from mimicry.dataset import choose_dataset\n"
        "env = json.loads(sys.argv[1])\n"
        "choose_dataset(None, 'train', env); choose_dataset('sample', 'train', env)\n"
        "print(sorted(m for m in ('datasets', 'pyarrow', 'pandas', 'huggingface_hub')"
        " if m in sys.modules))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, json.dumps(env)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert child.stdout.strip() == "[]"
