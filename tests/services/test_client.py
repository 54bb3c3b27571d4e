"""``AvidClient`` and ``avid client ingest|search|items`` against a real ``avid serve``
(a subprocess on a free port) with an API key; files longer than 2.5 s become background jobs
there, so the client's waiting for jobs is exercised too."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from avid_model.cli import main
from avid_model.media_writer import write_media
from services.client import AvidClient, ClientError, Item, SearchHit
from tests.services.conftest import RATE, Media, tone
from tests.services.server_process import ServerProcess, free_port

KEY = "client-key"


@pytest.fixture(scope="module")
def server(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("client-server")
    env = {"AVID_API_KEY": KEY, "AVID_SYNC_MAX_SECONDS": "2.5"}
    process = ServerProcess(checkpoint_dir, root / "data", root / "serve.log", **env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def query_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s sound: search queries are limited to the service's 2.5 s here."""
    path = tmp_path_factory.mktemp("query") / "query.wav"
    write_media(path, audio=tone(2, 500.0), sample_rate=RATE)
    return path


@pytest.fixture
def client(server: ServerProcess) -> Iterator[AvidClient]:
    with AvidClient(server.url, KEY, job_poll_s=0.1) as avid:
        yield avid
        for item in list(avid.iter_items()):
            avid.delete(item.id)


def test_the_client_class_embeds_pages_searches_patches_and_deletes(
    client: AvidClient, media: Media, query_wav: Path
) -> None:
    assert client.ready()
    video = client.embed(media.videos[0], metadata={"label": "a"})  # 3 s: a background job
    assert video.job_id is not None
    assert video.id is not None
    short = client.embed(media.short_video)  # 2 s: answered at once
    assert short.job_id is None
    sound = client.embed(media.wav)  # .wav: /embed/audio
    assert client.item(str(sound.id)).kind == "audio"
    item = client.item(str(video.id))
    assert isinstance(item, Item)
    assert (item.file_name, item.size_bytes) == ("video_0.mp4", media.videos[0].stat().st_size)
    info = client.info()
    assert (info["items"], info["access"]) == (3, "write")
    paged = list(client.iter_items(page_size=1))
    assert [i.id for i in paged] == [video.id, short.id, sound.id]
    hits = client.search(query_wav, "video", k=5)
    assert all(isinstance(h, SearchHit) for h in hits)
    assert {(h.file_name, h.size_bytes) for h in hits if h.id == video.id} == {
        ("video_0.mp4", media.videos[0].stat().st_size)
    }
    assert {h.id for h in hits} == {video.id, short.id}
    only_a = client.search(query_wav, "video", filter={"label": "a"}, with_vectors=True)
    assert [h.id for h in only_a] == [video.id]
    assert only_a[0].vector is not None
    again = client.search_vector(only_a[0].vector, "video", k=1)
    assert again[0].id == video.id
    assert again[0].score == pytest.approx(1.0, abs=1e-4)
    assert client.update_metadata(str(video.id), {"label": None, "b": 2}).metadata == {"b": 2}
    assert client.media(str(short.id)) == media.short_video.read_bytes()
    client.delete(str(short.id))
    with pytest.raises(ClientError) as missing:
        client.item(str(short.id))
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as bad:
        client.embed(media.text_file, "video")
    assert (bad.value.status, bad.value.code) == (422, "unreadable")


def test_a_wrong_key_is_a_client_error(server: ServerProcess) -> None:
    with AvidClient(server.url, "nope") as avid, pytest.raises(ClientError) as refused:
        avid.items()
    assert refused.value.status == 401


def test_cli_ingest_resumes_and_search_and_items_print_tables(
    client: AvidClient,
    server: ServerProcess,
    media: Media,
    query_wav: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    for path in (media.videos[1], media.short_video):
        shutil.copy(path, folder / path.name)
    shutil.copy(media.wav, folder / "more" / "tone.wav")
    shutil.copy(media.truncated_mp4, folder / "more" / "broken.mp4")
    shutil.copy(media.text_file, folder / "notes.txt")  # not a media suffix: left out
    connection = ["--url", server.url, "--key", KEY]
    ingest = ["client", "ingest", str(folder), *connection, "--no-progress"]

    assert main([*ingest, "--metadata", '{"set": "cli"}', "--concurrency", "2"]) == 1
    out = capsys.readouterr().out
    assert "failed: " in out
    assert "broken.mp4" in out
    assert "4 files: 3 stored, 0 already stored, 1 failed" in out
    stored = list(client.iter_items())
    assert sorted(i.file_name or "" for i in stored) == ["short.mp4", "tone.wav", "video_1.mp4"]
    assert {i.kind for i in stored if i.file_name == "tone.wav"} == {"audio"}
    assert all(i.metadata == {"set": "cli"} for i in stored)

    (folder / "more" / "broken.mp4").unlink()
    assert main(ingest) == 0  # resumed: everything is already stored
    assert "3 files: 0 stored, 3 already stored, 0 failed" in capsys.readouterr().out
    assert len(list(client.iter_items())) == 3

    assert main(["client", "search", str(query_wav), *connection, "--k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["#", "score", "window", "(s)", "kind", "name", "id"]
    assert len(table) == 3
    assert main(["client", "search", str(query_wav), *connection, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert {h["file_name"] for h in hits} == {"short.mp4", "video_1.mp4"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert np.isfinite(scores).all()

    assert main(["client", "items", *connection]) == 0
    listing = capsys.readouterr().out
    assert "tone.wav" in listing
    assert "3 of 3 items" in listing


def test_cli_errors_are_one_line(
    server: ServerProcess, media: Media, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert main(["client", "items", "--url", nowhere]) == 2
    assert "cannot reach" in capsys.readouterr().err
    assert main(["client", "items", "--url", server.url, "--key", "nope"]) == 2
    assert "401 unauthorized: invalid API key" in capsys.readouterr().err
    assert main(["client", "search", "/no/such.wav", "--url", server.url]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_patch_and_delete_items(
    client: AvidClient, server: ServerProcess, media: Media, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = ["--url", server.url, "--key", KEY]
    first = client.embed(media.short_video, metadata={"label": "a", "n": 1}).id
    second = client.embed(media.wav).id
    assert first is not None
    assert second is not None

    patch = ["client", "patch", first, *connection]
    assert main([*patch, "--metadata", '{"n": null, "set": "x"}', "--set", "label=b"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"id": first, "metadata": {"label": "b", "set": "x"}}
    assert main([*patch, "--set", "n=3", "--set", "ok=true"]) == 0
    capsys.readouterr()
    assert client.item(first).metadata == {"label": "b", "set": "x", "n": 3, "ok": True}
    assert main([*patch]) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert main([*patch, "--set", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["client", "patch", "no-such-id", *connection, "--set", "a=1"]) == 2
    assert "404" in capsys.readouterr().err

    assert main(["client", "delete", first, "no-such-id", second, *connection]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"deleted {first}", f"deleted {second}"]
    assert "failed: no-such-id: 404" in captured.err
    assert list(client.iter_items()) == []
    assert main(["client", "delete", first, "--url", server.url, "--key", "nope"]) == 2
    assert "401" in capsys.readouterr().err


def test_cli_items_pages_with_the_cursor_or_lists_them_all(
    client: AvidClient, server: ServerProcess, media: Media, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = ["--url", server.url, "--key", KEY]
    for path in (media.short_video, media.wav, media.videos[2]):
        client.embed(path)
    items = ["client", "items", *connection]
    names = ["short.mp4", "tone.wav", "video_2.mp4"]  # oldest first

    assert main([*items, "--limit", "2"]) == 0
    first = capsys.readouterr().out
    footer = first.splitlines()[-1]
    assert footer.startswith("2 of 3 items (more: --cursor ")
    assert [name in first for name in names] == [True, True, False]
    cursor = footer.split("--cursor ")[1].split()[0]
    assert main([*items, "--limit", "2", "--cursor", cursor]) == 0
    second = capsys.readouterr().out
    assert second.splitlines()[-1] == "1 of 3 items"
    assert [name in second for name in names] == [False, False, True]

    assert main([*items, "--limit", "1", "--all"]) == 0
    every = capsys.readouterr().out
    assert every.splitlines()[-1] == "3 of 3 items"
    assert all(name in every for name in names)
    assert main([*items, "--limit", "1", "--all", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == names
    assert main([*items, "--limit", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert f"--cursor {cursor}" in captured.err  # stdout stays JSON lines
    with pytest.raises(SystemExit):
        main([*items, "--all", "--cursor", cursor])
