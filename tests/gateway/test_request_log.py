"""The request log on its own: what a record keeps, the file's mode and version, concurrent writers.

That a gateway killed outright (SIGKILL) loses at most the request in flight is tested against a real
gateway in ``test_experiments.py``, on the module's shared gateway, last.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import threading

import pytest

from tunesmith.gateway import requestlog
from tunesmith.gateway.requestlog import Record, RequestLog

WAV = b"RIFF" + bytes(range(256)) * 40
TUNE = "X:1\nT:Kesh\nM:6/8\nL:1/8\nK:G\n|:G3 GAB|A3 ABd|\n"


def record(i: int, **changes) -> Record:
    fields = dict(ts=1.0 + i, request_id=f"r{i}", kind="model", target="tune-generator-v1", experiment="ab",
                  arm="tune-generator-v1", mirror=False, status=200, latency_ms=12.5, inputs={"seed": [i]},
                  outputs={"abc": [TUNE]})
    return Record(**{**fields, **changes})


def test_records_come_back_as_written_and_by_experiment_arm_and_target(tmp_path):
    log = RequestLog(tmp_path / "log.sqlite")
    log.append(record(1))
    log.append(record(2, target="tune-generator-v2", arm="tune-generator-v2", mirror=True))
    log.append(record(3, experiment=None, arm=None, kind="pipeline", target="studio", status=400,
                      outputs={"error": "bad"}))
    assert log.records()[0] == record(1)
    assert [r.request_id for r in log.records(experiment="ab")] == ["r1", "r2"]
    assert [r.request_id for r in log.records(arm="tune-generator-v2")] == ["r2"]
    assert log.records(target="studio")[0].outputs == {"error": "bad"} and len(log) == 3
    log.close()
    again = RequestLog(tmp_path / "log.sqlite")  # another reader (stage 3's judge) sees the same
    assert again.records(experiment="ab", arm="tune-generator-v2")[0].mirror is True


def test_the_database_is_in_wal_mode_with_a_schema_version(tmp_path):
    RequestLog(tmp_path / "log.sqlite").append(record(1))
    conn = sqlite3.connect(tmp_path / "log.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == requestlog.SCHEMA_VERSION
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        RequestLog(tmp_path / "log.sqlite")


def test_audio_is_kept_as_a_digest_and_text_as_text_whichever_way_it_came():
    digest = {"sha256": hashlib.sha256(WAV).hexdigest(), "bytes": len(WAV)}
    b64 = base64.b64encode(WAV).decode()
    as_json = requestlog.summarize([
        {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [b64], "parameters": {"content_type": "base64"}},
        {"name": "abc", "datatype": "BYTES", "shape": [1], "data": [TUNE]},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [7]},
        {"name": "embedding", "datatype": "FP32", "shape": [1, 300], "data": [[0.5] * 300]},
    ])
    assert as_json["audio"] == [digest] and as_json["abc"] == [TUNE] and as_json["seed"] == [7]
    assert as_json["embedding"]["elements"] == 300  # a long numeric tensor as its size and digest
    untagged = requestlog.summarize([{"name": "audio", "datatype": "BYTES", "shape": [1], "data": [b64]}])
    raw = requestlog.summarize([{"name": "audio", "datatype": "BYTES", "shape": [1], "data": [WAV]}])
    encoded = requestlog.summarize([{"name": "audio", "datatype": "BYTES", "shape": [1], "data": [b64.encode()]}])
    assert untagged["audio"] == raw["audio"] == encoded["audio"] == [digest]
    assert requestlog.summarize_json(b"not json", "inputs")["body"]["bytes"] == 8


def test_appending_does_not_wait_for_the_disk(tmp_path):
    log = RequestLog(tmp_path / "log.sqlite")
    threads = [threading.Thread(target=lambda k=k: [log.append(record(100 * k + i)) for i in range(50)]) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log) == 200 and len({r.request_id for r in log.records()}) == 200
