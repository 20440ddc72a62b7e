"""tunesmith.audio.effects: the audio-fx chain's behaviour and the errors a runtime turns into 400s."""

import dataclasses

import numpy as np
import pytest

from tunesmith.audio.effects import (
    PARAM_RANGES,
    PEAK_LIMIT,
    EffectError,
    EffectParams,
    apply_chain,
    params_from_dict,
    reverb_impulse_response,
    validate,
)

RATE = 22050


def sine(frequency=440.0, seconds=1.0, amplitude=0.5, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples, rate=RATE):
    """Frequency of the strongest spectral peak, refined by parabolic interpolation."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / len(samples)


def test_default_params_change_nothing():
    x = sine()
    out = apply_chain(x, RATE, EffectParams())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(apply_chain(x, RATE), x)  # params=None is the same


def test_default_params_are_inside_their_ranges():
    defaults = EffectParams()
    assert set(PARAM_RANGES) == {f.name for f in dataclasses.fields(EffectParams)}
    validate(defaults)


@pytest.mark.parametrize("gain_db", [-12.0, -6.0, 3.0])
def test_gain_is_exact_in_decibels(gain_db):
    x = sine(amplitude=0.25)
    out = apply_chain(x, RATE, EffectParams(gain_db=gain_db))
    np.testing.assert_allclose(out, x * 10 ** (gain_db / 20), rtol=1e-6, atol=1e-7)


def test_too_much_gain_scales_down_instead_of_clipping():
    x = sine(amplitude=0.9)
    out = apply_chain(x, RATE, EffectParams(gain_db=12.0))
    assert np.max(np.abs(out)) == pytest.approx(PEAK_LIMIT, rel=1e-6)
    np.testing.assert_allclose(out / np.max(np.abs(out)), x / np.max(np.abs(x)), atol=1e-6)  # same shape


@pytest.mark.parametrize("semitones, expected", [(12.0, 880.0), (-12.0, 220.0), (3.0, 440.0 * 2 ** 0.25)])
def test_pitch_shift_moves_a4_to_the_expected_frequency(semitones, expected):
    x = sine(440.0, seconds=1.0)
    out = apply_chain(x, RATE, EffectParams(pitch_semitones=semitones))
    assert len(out) == len(x)  # the length does not change
    middle = out[RATE // 4 : 3 * RATE // 4]
    assert dominant_frequency(middle) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("rate", [0.5, 1.25, 2.0])
def test_tempo_change_changes_length_not_pitch(rate):
    x = sine(440.0, seconds=1.0)
    out = apply_chain(x, RATE, EffectParams(tempo_rate=rate))
    assert len(out) == round(len(x) / rate)
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert dominant_frequency(middle) == pytest.approx(440.0, rel=0.01)


def test_delay_adds_echoes_at_the_delay_time():
    x = np.zeros(RATE, dtype=np.float32)
    x[0] = 0.5
    out = apply_chain(x, RATE, EffectParams(delay_time=0.1, delay_feedback=0.5, delay_mix=0.5))
    step = int(0.1 * RATE)
    assert out[0] == pytest.approx(0.5)
    assert out[step] == pytest.approx(0.25)  # first echo: mix * dry
    assert out[2 * step] == pytest.approx(0.125)  # second: times feedback
    assert len(out) > len(x)  # the echoes ring on after the input ends


def test_reverb_tail_follows_room_size():
    small = reverb_impulse_response(RATE, 0.0)
    hall = reverb_impulse_response(RATE, 1.0)
    assert len(hall) > 5 * len(small)
    assert np.sum(small**2) == pytest.approx(1.0) and np.sum(hall**2) == pytest.approx(1.0)
    click = np.zeros(RATE // 2, dtype=np.float32)
    click[0] = 0.5
    out = apply_chain(click, RATE, EffectParams(reverb_room=1.0, reverb_mix=0.5))
    assert len(out) > len(click) + 2 * RATE  # a 3 s hall decay rings on
    assert np.abs(out[RATE : RATE + 1000]).max() > 0  # sound well after the click


def test_full_chain_output_is_finite_and_peak_safe():
    x = sine(330.0, seconds=2.0, amplitude=0.95) + sine(440.0, seconds=2.0, amplitude=0.05)
    loud = EffectParams(
        tempo_rate=0.8, pitch_semitones=-5, delay_time=0.05, delay_feedback=0.9, delay_mix=1.0,
        reverb_room=1.0, reverb_mix=0.7, gain_db=24.0,
    )
    out = apply_chain(x, RATE, loud)
    assert out.dtype == np.float32 and out.ndim == 1
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out)) <= 1.0


def test_stereo_input_is_mixed_to_mono():
    x = sine()
    out = apply_chain(np.stack([x, x], axis=1), RATE, EffectParams(gain_db=-6.0))
    assert out.shape == x.shape


def test_very_short_input_can_be_pitch_shifted():
    x = sine(seconds=0.02)
    out = apply_chain(x, RATE, EffectParams(pitch_semitones=2.0, tempo_rate=1.5))
    assert len(out) == round(len(x) / 1.5)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "name, value",
    [("pitch_semitones", 13.0), ("tempo_rate", 0.1), ("gain_db", -100.0), ("reverb_mix", 1.5),
     ("delay_feedback", 0.95), ("delay_time", 0.0), ("reverb_room", float("nan"))],
)
def test_out_of_range_setting_names_the_parameter_and_range(name, value):
    params = dataclasses.replace(EffectParams(), **{name: value})
    with pytest.raises(EffectError) as info:
        apply_chain(sine(), RATE, params)
    low, high = PARAM_RANGES[name][:2]
    message = str(info.value)
    assert name in message and f"{low:g}" in message and f"{high:g}" in message


def test_setting_that_is_not_a_number_is_refused():
    with pytest.raises(EffectError, match="gain_db"):
        validate(EffectParams(gain_db="loud"))
    with pytest.raises(EffectError, match="tempo_rate"):
        validate(EffectParams(tempo_rate=True))


def test_params_from_dict_accepts_numbers_and_text_and_refuses_unknown_names():
    params = params_from_dict({"gain_db": "-3", "reverb_mix": 0.2})
    assert params == EffectParams(gain_db=-3.0, reverb_mix=0.2)
    with pytest.raises(EffectError, match="reverb_mx.*known:.*reverb_mix"):
        params_from_dict({"reverb_mx": 0.2})
    with pytest.raises(EffectError, match="pitch_semitones"):
        params_from_dict({"pitch_semitones": "up"})


@pytest.mark.parametrize(
    "samples, rate, match",
    [
        (np.array([], dtype=np.float32), RATE, "no samples"),
        (np.array([0.0, np.nan]), RATE, "NaN"),
        (np.zeros((2, 2, 2)), RATE, "shape"),
        (np.zeros(100), 1000, "sample_rate"),
        (np.zeros(100), 22050.0, "sample_rate"),
    ],
)
def test_unusable_audio_is_refused(samples, rate, match):
    with pytest.raises(EffectError, match=match):
        apply_chain(samples, rate, EffectParams())


def test_audio_longer_than_the_limit_is_refused():
    with pytest.raises(EffectError, match="longer than the limit of 1 s"):
        apply_chain(sine(seconds=2.0), RATE, EffectParams(), max_seconds=1.0)
