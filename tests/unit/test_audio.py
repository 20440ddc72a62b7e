"""tunesmith.audio.io: WAV encoding, tolerant decoding and the errors a runtime turns into HTTP 400."""

import io

import numpy as np
import pytest
import soundfile as sf

from tunesmith.audio.io import (
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    decode_audio,
    encode_wav,
    peak_normalise,
    to_mono,
)


def tone(frequency=440.0, seconds=1.0, rate=22050, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def file_bytes(samples, rate, fmt="WAV", subtype=None):
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def test_encode_wav_is_a_16_bit_pcm_wav_file():
    data = encode_wav(tone(), 22050)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    info = sf.info(io.BytesIO(data))
    described = (info.format, info.subtype, info.samplerate, info.channels, info.frames)
    assert described == ("WAV", "PCM_16", 22050, 1, 22050)


def test_wav_round_trip_keeps_samples_and_rate():
    original = tone(seconds=0.5)
    samples, rate = decode_audio(encode_wav(original, 22050))
    assert rate == 22050
    assert samples.dtype == np.float32 and samples.shape == original.shape
    np.testing.assert_allclose(samples, original, atol=1.0 / 32767 + 1e-6)


def test_encode_clips_out_of_range_samples_instead_of_wrapping():
    samples, _ = decode_audio(encode_wav(np.array([2.0, -3.0, 0.5], dtype=np.float32), 8000))
    assert samples[0] > 0.99 and samples[1] < -0.99
    assert samples[2] == pytest.approx(0.5, abs=1e-4)


def test_encode_refuses_nan():
    with pytest.raises(NonFiniteAudioError, match="NaN or infinite"):
        encode_wav(np.array([0.0, np.nan], dtype=np.float32), 8000)


@pytest.mark.parametrize("rate", [0, -1, 22050.5, None])
def test_encode_refuses_bad_sample_rate(rate):
    with pytest.raises(AudioError, match="sample_rate"):
        encode_wav(tone(), rate)


def test_stereo_44k_is_mixed_down_and_resampled():
    left, right = tone(440, rate=44100), tone(440, rate=44100, amplitude=0.1)
    data = file_bytes(np.stack([left, right], axis=1), 44100)
    samples, rate = decode_audio(data, sample_rate=22050)
    assert rate == 22050
    assert samples.ndim == 1 and len(samples) == pytest.approx(22050, abs=2)
    assert peak_hz(samples, rate) == pytest.approx(440, abs=2)
    assert np.max(np.abs(samples)) == pytest.approx(0.3, abs=0.01)  # the mean of the two channels


def test_file_rate_is_kept_when_no_rate_is_asked():
    samples, rate = decode_audio(file_bytes(tone(rate=16000), 16000))
    assert rate == 16000 and len(samples) == 16000


@pytest.mark.parametrize("fmt,subtype", [("FLAC", None), ("OGG", "VORBIS")])
def test_other_formats_decode(fmt, subtype):
    samples, rate = decode_audio(file_bytes(tone(660), 22050, fmt, subtype), sample_rate=22050)
    assert rate == 22050
    assert peak_hz(samples, rate) == pytest.approx(660, abs=2)


def test_float_audio_above_full_scale_is_scaled_into_range():
    data = file_bytes(tone(amplitude=2.0), 22050, subtype="FLOAT")
    samples, _ = decode_audio(data)
    assert np.max(np.abs(samples)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "data", [b"this is not audio at all", bytes(range(256)) * 4, b"RIFF\x00\x00\x00\x00WAVE"]
)
def test_bytes_that_are_not_audio(data):
    with pytest.raises(NotAudioError, match="not a readable audio file"):
        decode_audio(data)


def test_non_bytes_input():
    with pytest.raises(NotAudioError, match="must be bytes"):
        decode_audio("a string")


def test_empty_bytes():
    with pytest.raises(EmptyAudioError, match="empty"):
        decode_audio(b"")


def test_audio_file_without_samples():
    with pytest.raises(EmptyAudioError, match="no samples"):
        decode_audio(file_bytes(np.zeros(0, dtype=np.float32), 22050))


def test_too_long_names_both_numbers():
    with pytest.raises(AudioTooLongError) as info:
        decode_audio(file_bytes(tone(seconds=2.5), 22050), max_seconds=1.5)
    assert "2.50 s" in str(info.value) and "1.5 s" in str(info.value)


def test_exactly_max_seconds_is_accepted():
    samples, _ = decode_audio(file_bytes(tone(seconds=1.0), 22050), max_seconds=1.0)
    assert len(samples) == 22050


def test_non_finite_samples():
    samples = tone()
    samples[100] = np.inf
    with pytest.raises(NonFiniteAudioError, match="NaN or infinite"):
        decode_audio(file_bytes(samples, 22050, subtype="FLOAT"))


@pytest.mark.parametrize("kwargs", [{"sample_rate": 0}, {"max_seconds": 0}, {"max_seconds": float("nan")}])
def test_bad_decode_arguments(kwargs):
    with pytest.raises(AudioError):
        decode_audio(encode_wav(tone(), 22050), **kwargs)


def test_audio_errors_are_value_errors():
    for error in (NotAudioError, EmptyAudioError, AudioTooLongError, NonFiniteAudioError):
        assert issubclass(error, AudioError) and issubclass(error, ValueError)


def test_peak_normalise():
    out = peak_normalise(np.array([0.1, -0.2, 0.05]), peak=0.9)
    assert out.dtype == np.float32
    assert np.max(np.abs(out)) == pytest.approx(0.9)
    assert out[1] < 0
    assert not np.any(peak_normalise(np.zeros(4)))


def test_to_mono_averages_channels():
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(to_mono(stereo), [0.5, 0.5])
