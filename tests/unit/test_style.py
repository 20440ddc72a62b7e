"""The rhythm classifier: the shipped checkpoint, its inputs and errors, the Fréchet distance, training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunesmith import paths
from tunesmith.style import model as style
from tunesmith.style import data as style_data
from tunesmith.style import evaluate as style_evaluate
from tunesmith.style import train as style_train
from tunesmith.style.card import model_card
from tunesmith.audio.io import encode_wav
from tunesmith.style.model import StyleClassifier, StyleInputError, frechet_distance
from tunesmith.audio.synth import render

CHECKPOINT = paths.CHECKPOINTS / "style-classifier"
SR = 22050

# Traditional tunes, written here in the corpus's canonical style (L:1/8, repeats marked).
JIG = """X:1
T:The Irish Washerwoman
M:6/8
L:1/8
R:jig
K:G
|:BGG DGG|BGB dcB|cAA EAA|cBc edc|BGG DGG|BGB dcB|cBc Adc|BGG G2d:|
|:gdd gdd|gdg bag|fdd fdd|fdf agf|gdd gdd|gdg bag|fed cBA|BGG G2d:|
"""
REEL = """X:1
T:Drowsy Maggie
M:2/2
L:1/8
R:reel
K:Edor
|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|
|:d2fd c2ec|defg afge|d2fd c2ec|BABc dAFA:|
"""


@pytest.fixture(scope="module")
def model() -> StyleClassifier:
    return StyleClassifier.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def jig_audio() -> np.ndarray:
    # 56 bars per minute of 6/8: 168 quarter notes (112 dotted quarters) per minute
    return render(JIG, tempo=168, instrument="fiddle", sample_rate=SR)


@pytest.fixture(scope="module")
def reel_audio() -> np.ndarray:
    # 55 bars per minute of 2/2: 220 quarter notes per minute
    return render(REEL, tempo=220, instrument="flute", sample_rate=SR)


def test_checkpoint_is_small_and_pickle_free():
    files = {p.name for p in CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "confusion_matrix.png", "eval.json"} <= files
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl")) for name in files)
    assert sum(p.stat().st_size for p in CHECKPOINT.iterdir()) < 1_000_000
    record = json.loads((CHECKPOINT / "eval.json").read_text())
    assert record["labels"] == list(style_data.CLASSES)
    assert 0.0 <= record["test"]["balanced_accuracy"] <= 1.0


def test_labels_are_the_four_rhythms(model):
    assert model.labels == ["reel", "jig", "hornpipe", "slip jig"]


def test_predict_gives_a_distribution_and_the_right_rhythm(model, jig_audio, reel_audio):
    jig = model.predict(jig_audio, SR)
    reel = model.predict(reel_audio, SR)
    for probs in (jig, reel):
        assert list(probs) == model.labels
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert max(jig, key=jig.get) == "jig"
    assert max(reel, key=reel.get) == "reel"


def test_prediction_does_not_depend_on_the_sample_rate_much(model, jig_audio):
    at_44k = render(JIG, tempo=168, instrument="fiddle", sample_rate=44100)
    a = model.predict(jig_audio, SR)
    b = model.predict(at_44k, 44100)
    assert max(b, key=b.get) == max(a, key=a.get)


def test_predict_batch_matches_predict(model, jig_audio, reel_audio):
    batch = model.predict_batch([(jig_audio, SR), (reel_audio, SR)])
    assert len(batch) == 2
    for got, clip in zip(batch, (jig_audio, reel_audio)):
        single = model.predict(clip, SR)
        assert got == pytest.approx(single, abs=1e-5)
    assert model.predict_batch([]) == []


def test_predict_wav_reads_file_bytes(model, reel_audio):
    probs = model.predict_wav(encode_wav(reel_audio, SR))
    assert max(probs, key=probs.get) == "reel"


def test_embedding_shape_and_content(model, jig_audio, reel_audio):
    e_jig = model.embed(jig_audio, SR)
    e_reel = model.embed(reel_audio, SR)
    assert e_jig.shape == (model.config.embed_dim,) == (style.EMBED_DIM,)
    assert e_jig.dtype == np.float32 and np.all(np.isfinite(e_jig))
    assert not np.allclose(e_jig, e_reel)
    assert model.embed_batch([(jig_audio, SR), (reel_audio, SR)]).shape == (2, style.EMBED_DIM)


def test_long_audio_is_cut_into_crops(model, jig_audio):
    assert len(jig_audio) / SR > style.CROP_SECONDS + style.CROP_HOP_SECONDS
    lags, stats = style.features(jig_audio, SR)
    assert lags.shape[0] >= 2
    assert lags.shape[1:] == (len(style.CHANNELS), style.N_LAGS)
    assert stats.shape == (lags.shape[0], len(style.STATS))


@pytest.mark.parametrize(
    "samples, rate, message",
    [
        (np.zeros(SR), SR, "at least"),
        (np.zeros(SR * 5), SR, "silent"),
        (np.full(SR * 5, np.nan), SR, "NaN"),
        (np.zeros((2, 2, SR)), SR, "mono"),
        (np.ones(SR * 5), 1000, "sample_rate"),
        ("not audio", SR, "numbers"),
    ],
)
def test_bad_audio_is_refused_with_a_reason(model, samples, rate, message):
    with pytest.raises(StyleInputError, match=message):
        model.predict(samples, rate)


def test_batch_errors_name_the_clip(model, jig_audio):
    with pytest.raises(StyleInputError, match="clip 1"):
        model.predict_batch([(jig_audio, SR), (np.zeros(10), SR)])


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = frechet_distance(a, a + 1.0)
    assert shifted == pytest.approx(8.0, rel=1e-3)  # |mu_a - mu_b|^2 with the same covariance
    assert frechet_distance(a, a * 2.0) > 0.0
    few = rng.normal(size=(5, 48))  # fewer samples than dimensions: singular covariances
    assert np.isfinite(frechet_distance(few, few + 0.5))


def test_frechet_distance_refuses_unusable_sets():
    with pytest.raises(ValueError, match="at least two"):
        frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="same dim"):
        frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))


def test_frechet_distance_on_real_embeddings(model, jig_audio, reel_audio):
    jigs = model.embed_batch([(jig_audio[i * SR :], SR) for i in range(4)])
    reels = model.embed_batch([(reel_audio[i * SR :], SR) for i in range(4)])
    assert frechet_distance(jigs, jigs) == pytest.approx(0.0, abs=1e-4)
    assert frechet_distance(jigs, reels) > frechet_distance(jigs, jigs)


def test_loading_refuses_a_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        StyleClassifier.from_pretrained(tmp_path)


def test_save_and_load_round_trip(model, tmp_path, reel_audio):
    copy = StyleClassifier.from_pretrained(model.save_pretrained(tmp_path / "copy"))
    assert copy.predict(reel_audio, SR) == pytest.approx(model.predict(reel_audio, SR), abs=1e-7)


def test_loading_refuses_other_feature_settings(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "other")
    config = json.loads((folder / "config.json").read_text())
    config["feature"]["hop"] = 256
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="feature settings"):
        StyleClassifier.from_pretrained(folder)


# -- labels and data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rhythm, meter, expected",
    [
        ("reel", "2/2", "reel"),
        ("reel", "2/4", "reel"),
        ("hornpipe", "4/4", "hornpipe"),
        ("jig", "6/8", "jig"),
        ("jig", "9/8", "slip jig"),
        ("slip jig", "9/8", "slip jig"),
        ("jig", "2/4", None),
        ("strathspey", "4/4", None),
        (None, "6/8", None),
    ],
)
def test_tune_class_checks_the_meter(rhythm, meter, expected):
    r_line = f"R:{rhythm}\n" if rhythm else ""
    abc = f"X:1\nM:{meter}\nL:1/8\n{r_line}K:D\nABcd efga | ABcd efga |]\n"
    assert style_data.tune_class(abc) == expected


def test_opening_bars_keep_a_cut_repeat_playable():
    tune = "X:1\nM:2/2\nL:1/8\nK:D\n|: ABcd efga | ABcd efga | ABcd efga | ABcd efga :|\n"
    cut = style_data.opening_bars(tune, bars=3)
    assert cut.rstrip().endswith(":|")
    assert cut.count("|") == 3 + 1  # the opening |: and three bar lines
    plain = "X:1\nM:2/2\nL:1/8\nK:D\nABcd efga | ABcd efga | ABcd efga | ABcd efga |]\n"
    assert style_data.opening_bars(plain, bars=2).rstrip().endswith("|]")
    assert style_data.opening_bars(plain, bars=40) == plain


def test_tempo_ranges_overlap_and_shared_mode_is_one_range():
    ranges = [style_data.tempo_range(c) for c in style_data.CLASSES]
    assert max(r[0] for r in ranges) < min(r[1] for r in ranges)  # a tempo every class can have
    shared = {style_data.tempo_range(c, "shared") for c in style_data.CLASSES}
    assert len(shared) == 1


def test_quick_training_runs_end_to_end(tmp_path):
    out = tmp_path / "checkpoint"
    results = style_train.main(["--quick", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert (out / "model.safetensors").is_file() and (out / "confusion_matrix.png").is_file()
    assert "balanced accuracy" in (out / "README.md").read_text().lower()
    saved = json.loads((out / "eval.json").read_text())
    assert saved["test"]["confusion_matrix"] == results["test"]["confusion_matrix"]
    assert np.asarray(saved["test"]["confusion_matrix"]).shape == (4, 4)
    assert list((tmp_path / "cache").glob("clips-*.npz"))
    model = StyleClassifier.from_pretrained(out)
    assert model.labels == list(style_data.CLASSES)
    whole = results["test_performances"]
    performances = sum(v["performances"] for v in whole["counts"].values())
    assert np.sum(whole["performance_confusion_matrix"]) == performances > 0
    assert sum(v["clips"] for v in whole["counts"].values()) >= performances  # one crop or several each
    assert "whole performance" in (out / "README.md").read_text()


def test_evaluate_measures_a_checkpoint_without_training_it(tmp_path, capsys):
    shipped = paths.CHECKPOINTS / "style-classifier"
    before = (shipped / "model.safetensors").read_bytes()
    results = style_evaluate.main(["--quick", "--checkpoint", str(shipped), "--cache", str(tmp_path / "cache")])
    assert set(results) == {"test", "test_performances"}
    printed = capsys.readouterr().out
    assert "balanced accuracy" in printed and "per performance" in printed and "true \\ predicted" in printed
    assert (shipped / "model.safetensors").read_bytes() == before  # measured, not rewritten


def test_the_shipped_model_card_is_its_evaluation_record_filled_in():
    record = json.loads((CHECKPOINT / "eval.json").read_text())
    card = model_card(record)
    assert "${" not in card
    assert f"**{record['test_performances']['performance_balanced_accuracy']:.1%}**" in card
    assert card == (CHECKPOINT / "README.md").read_text(encoding="utf-8")


def test_a_whole_performance_is_cut_into_crops_that_stay_together(tmp_path):
    grouped = {c: [] for c in style_data.CLASSES}
    grouped["jig"] = [JIG]
    jobs = style_data.plan_split(grouped, per_class=None, variants=1, seed=1, split="test", whole=True)
    results = style_data.render_job(jobs[0][0])
    assert len(results) >= 2  # 16 bars of a jig at dance tempo last longer than one crop
    cache = style_data.FeatureCache(tmp_path)
    cache.items = {key: (lags, stats) for key, lags, stats, _ in results}
    data = style_data.build_dataset(jobs, cache, workers=1)
    assert len(data.labels) == len(results)
    assert set(data.performances.tolist()) == {0}
    assert data.counts()["jig"] == {"clips": len(results), "performances": 1, "tunes": 1}


def test_absolute_tempo_layer_round_trips(tmp_path, jig_audio):
    config = style.StyleConfig(labels=list(style_data.CLASSES), absolute=8)
    model = StyleClassifier(config)
    model.save_pretrained(tmp_path)
    loaded = StyleClassifier.from_pretrained(tmp_path)
    assert loaded.config.absolute == 8
    assert loaded.predict(jig_audio, SR) == pytest.approx(model.predict(jig_audio, SR), abs=1e-6)
