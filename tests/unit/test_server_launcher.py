"""The launcher merges settings and links the models folder without writing into it."""

import json
from pathlib import Path

import pytest

from tunesmith.serving.launcher import Server, ServerError, free_port, port_in_use


def test_prepare_merges_ports_and_links_models(tmp_path):
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    server = Server(models_dir=models, name=f"unit-{free_port()}", http_port=9999, overrides={"parallel_workers": 0})
    run = server.prepare()
    try:
        settings = json.loads((run / "settings.json").read_text())
        assert settings["http_port"] == 9999 and settings["parallel_workers"] == 0
        assert settings["debug"] is False and settings["host"] == "127.0.0.1"
        assert (run / "models").resolve() == models.resolve()
        assert sorted(p.name for p in models.iterdir()) == ["m"]
        assert server.http_url == "http://127.0.0.1:9999"
    finally:
        (run / "models").unlink()
        (run / "settings.json").unlink()
        run.rmdir()


def test_missing_models_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ServerError, match="no models folder"):
        Server(models_dir=tmp_path / "nope", name="unit-missing").prepare()


def test_free_port_is_free():
    assert not port_in_use(free_port())


def test_free_ports_differ_and_stay_out_of_the_range_of_outgoing_connections():
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux only
    if ephemeral.exists():
        low, high = (int(v) for v in ephemeral.read_text().split())
        assert all(not low <= p <= high for p in ports)
