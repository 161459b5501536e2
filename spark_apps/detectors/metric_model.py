"""The per-series model behind ``metric_scores``: pure numpy/numba, no Spark, no I/O.

Each sample is scored on arrival from its series' state, in three steps:

1. **Raw deviation, three channels.**
   - *Discord*: the distance from the newest ``window`` values to their nearest neighbour among
     every earlier subsequence of the trailing ``history`` (the left matrix-profile value of
     Yeh et al. 2016, "Matrix Profile I"; the nearest-neighbour score of KNN-CAD), divided by the
     history's range so it is unit-free. A spike, a level never seen, a new shape: far from
     every neighbour.
   - *Seasonal*: the same distance, but only to the subsequences that ended at the same time of
     day on each of the last ``seasonal_days`` days. A daily peak that does not come, or comes
     higher, is near *some* past shape but far from yesterday's. With ``weekly`` on, or with
     ``weekly`` auto once a series shows a weekly rhythm, only the subsequence that ended a
     week earlier counts: a weekday shaped like a weekend is near Sunday's shape but far from
     last Monday's. The evidence is the geometric mean, over every sample since a week ago
     first came within the history, of the distance to a week ago over the distance to a day
     ago: after at least ``WEEKLY_EVIDENCE_DAYS`` of it, a week ago is chosen when that mean
     is below ``WEEKLY_RATIO``. A day-long incident cannot fake it: it makes a week ago look
     closer for one day and farther a week later, and weighs a fourteenth at most.
   - *Spike*: the discord channel without averaging (below), so one wild sample counts at once;
     or, if larger, how far the sample lies beyond the range of the history before its last
     ``average`` samples, as a fraction of the range, times ``range_gain``: a drift to a level
     never seen counts once it has gone further than the history ever went, however slowly it
     got there (the range test of Skyline's and HTM's range expansion, made causal).
2. **Anomaly likelihood** (Ahmad et al. 2017, "Unsupervised real-time anomaly detection for
   streaming data"; the constant-state variant of htm.core): each channel's raw score, averaged
   over the last ``average`` samples, is compared with the running mean and variance of that
   average (EWMA over about ``likelihood_memory`` samples, floored as in HTM); its Gaussian tail
   is the probability of a score this unusual in this series' recent history. The smallest tail
   of the three channels, times three (Bonferroni), is the sample's tail ``p``.
3. **Calibrated score** ``log(p) / log(1e-10)`` in [0, 1] (HTM's log-likelihood score): 0.3 means
   a one-in-a-thousand deviation *for this series*, 0.5 one in 100,000, 1.0 one in 10^10; it does
   not saturate, so one threshold means the same on every series. Only the first of consecutive
   very unlikely samples stays high (HTM's red-point filter), and after a score of
   ``rest_level`` the series rests for ``rest`` samples (scores capped below it), as the top
   detectors do: one incident, one alarm.

The whole state of a series fits in one float64 vector (``SeriesState``): the last
``history + window`` values and timestamps, a few numbers per channel and the newest
subsequence's squared distance at each lag, 48 KB with the defaults. ``score_samples`` carries
it from call to call, so scoring a stream in micro-batches gives exactly the scores of scoring it
at once: the streaming query and ``lambdawatch backtest`` run this same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from lambdawatch.core.config_model import MetricScoresConfig

CHANNELS = 3  # discord (averaged), seasonal (averaged), spike (discord, not averaged)
DAY_SECONDS = 86_400
RED_TAIL = 1e-5  # HTM: a tail this small twice in a row ...
RED_REPORT = 1e-3  # ... is reported as this one
LOG_FLOOR = 1e-10  # score 1.0
STATE_HEADER = 7  # layout version, samples seen, previous tail, rest left, weekly evidence (3)
STATE_LAYOUT = 3.0
WEEKLY_AUTO, WEEKLY_ON, WEEKLY_OFF = 0, 1, 2
WEEKLY_MODES = {"auto": WEEKLY_AUTO, "on": WEEKLY_ON, "off": WEEKLY_OFF}
WEEKLY_EVIDENCE_DAYS = 14  # "auto" decides after two weeks of comparisons ...
WEEKLY_RATIO = 0.5  # ... for a week ago when it is, on geometric average, half as far as a day ago
WEEKLY_FLOOR = 1e-4  # squared distance per value, in squared history ranges, below which two
# shapes count as equal (so two flat days do not weigh as a ratio of zeros)
RESTART = 64  # the lag distances are summed afresh at every multiple of this many samples


@dataclass(frozen=True)
class ScoringParams:
    """One parameter set for every series. The values come from ``models.metric_scores``
    (their defaults were chosen on the development corpus; ``bench/real_corpus`` scores the
    leave-one-folder-out check); the likelihood's floors are HTM's."""

    history: int  # samples searched for neighbours: a week at five-minute samples
    window: int  # subsequence length
    seasonal_days: int
    warmup: int  # samples before the likelihood speaks
    likelihood_memory: float  # EWMA time constant of the likelihood, samples
    average: int  # raw scores averaged over this many samples (HTM: 10)
    rest: int  # samples of quiet after an alarm
    rest_level: float
    range_gain: float  # weight of a sample's excess beyond the history's range
    weekly: str  # the seasonal channel's reference: "auto", "on" (a week ago) or "off" (a day)
    mean_floor: float = 0.03
    variance_floor: float = 0.0003

    @classmethod
    def from_config(cls, config: MetricScoresConfig | None = None) -> ScoringParams:
        """From the validated settings (their defaults when none are given): the one path for
        the stream, the backtest and the tests."""
        config = config or MetricScoresConfig()
        return cls(
            history=config.history,
            window=config.window,
            seasonal_days=config.seasonal_days,
            warmup=config.warmup,
            likelihood_memory=config.likelihood_memory,
            average=config.average,
            rest=config.rest,
            rest_level=config.rest_level,
            range_gain=config.range_gain,
            weekly=config.weekly,
        )

    @property
    def version(self) -> str:
        weekly = "" if self.weekly == "off" else f"-weekly-{self.weekly}"
        return f"discord-likelihood-v3-h{self.history}w{self.window}a{self.average}{weekly}"

    @property
    def state_size(self) -> int:
        return STATE_HEADER + 2 * self._buffer + CHANNELS * (4 + self.average) + self.history + 1

    @property
    def _buffer(self) -> int:
        return self.history + self.window


class SeriesState:
    """A series' whole model as one float64 vector, so Spark keeps it as one binary column.

    Layout: header (with the weekly evidence: the sum of log distance ratios, the time of the
    first, their count), then ``history + window`` values, their timestamps (epoch seconds), then
    per channel ``mean, variance, count, running sum, last `average` raw scores``, then the
    squared distance at each lag ``0..history`` (below ``window`` unused).
    """

    def __init__(self, params: ScoringParams, vector: np.ndarray | None = None) -> None:
        self.params = params
        if vector is None or len(vector) != params.state_size or vector[0] != STATE_LAYOUT:
            vector = np.zeros(params.state_size)
            vector[0] = STATE_LAYOUT
            vector[2] = 1.0  # previous tail: nothing unusual yet
        self.vector = vector

    @property
    def samples(self) -> int:
        return int(self.vector[1])

    @property
    def weekly_evidence(self) -> tuple[float, float] | None:
        """Days of evidence and the geometric mean of the distance to a week ago over the
        distance to a day ago; None before a week ago first came within the history."""
        log_sum, first, count = self.vector[4:7]
        if count == 0:
            return None
        last = self.vector[STATE_HEADER + 2 * self.params._buffer - 1]
        return (last - first) / DAY_SECONDS, math.exp(log_sum / count)

    def to_bytes(self) -> bytes:
        return self.vector.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, params: ScoringParams, data: bytes | None) -> SeriesState:
        """A state of another layout (the parameters changed) starts the series afresh."""
        return cls(params, np.frombuffer(data, "<f8").copy() if data else None)


@dataclass(frozen=True)
class Scores:
    expected: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class Thresholds:
    warn: float
    error: float

    @classmethod
    def from_config(cls, config: MetricScoresConfig) -> Thresholds:
        return cls(config.warn_score, config.error_score)

    def severities(self, scores: np.ndarray) -> np.ndarray:
        """The one severity rule (SAFE, WARN or ERROR) for calibrated scores (stream and
        backtest)."""
        warn_or_safe = np.where(scores >= self.warn, "WARN", "SAFE")
        return np.where(scores >= self.error, "ERROR", warn_or_safe)


def score_samples(
    state: SeriesState, stamps: np.ndarray, values: np.ndarray
) -> tuple[Scores, SeriesState]:
    """Score samples (epoch seconds, values; in arrival order) and learn from them; returns
    the scores and the new state (the given state is not changed)."""
    p = state.params
    vector = state.vector.copy()
    expected, score = _advance(
        vector,
        np.ascontiguousarray(stamps, dtype=np.float64),
        np.ascontiguousarray(values, dtype=np.float64),
        p.history, p.window, p.seasonal_days, p.warmup,
        1.0 - math.exp(-1.0 / p.likelihood_memory), p.average, p.rest, p.rest_level,
        p.range_gain, WEEKLY_MODES[p.weekly], p.mean_floor, p.variance_floor,
    )  # fmt: skip
    return Scores(expected, score), SeriesState(p, vector)


def epoch_seconds(stamps: pd.Series) -> np.ndarray:
    """Epoch seconds at millisecond precision, the same from a Spark timestamp and a CSV."""
    millis = pd.to_datetime(stamps, utc=True).astype("datetime64[ms, UTC]").astype("int64")
    return millis.to_numpy() / 1000.0


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples of one series in time order (ties by value, so every path agrees)."""
    return frame.sort_values(["timestamp", "value"], kind="stable", ignore_index=True)


def score_frame(
    state: SeriesState, frame: pd.DataFrame, thresholds: Thresholds
) -> tuple[pd.DataFrame, SeriesState]:
    """One series' ``timestamp, value`` rows scored in time order: adds ``expected, score,
    severity, samples`` (samples seen before each row) and returns the new state."""
    ordered = in_time_order(frame)
    scores, new_state = score_samples(
        state, epoch_seconds(ordered["timestamp"]), ordered["value"].to_numpy(float)
    )
    scored = ordered.assign(
        expected=scores.expected,
        score=scores.score,
        severity=thresholds.severities(scores.score),
        samples=np.arange(state.samples, state.samples + len(ordered), dtype=np.int64),
    )
    return scored, new_state


@njit(cache=True)
def _squared_distance(x: np.ndarray, t: int, s: int, w: int, best: float) -> float:
    """Squared Euclidean distance of the ``w`` values ending at ``t`` and at ``s``; stops
    early once it exceeds ``best`` (the usual early abandoning of nearest-neighbour search)."""
    acc = 0.0
    for k in range(w):
        d = x[t - k] - x[s - k]
        acc += d * d
        if acc >= best:
            break
    return acc


@njit(cache=True)
def _at_or_before(ts: np.ndarray, lo: int, t: int, target: float) -> int:
    """The index of the last sample of ``ts[lo..t]`` at or before ``target`` (bisection:
    samples are scored in time order), ``lo - 1`` when none is. The seasonal channel's one rule
    for "the same time k days back"."""
    return lo - 1 + int(np.searchsorted(ts[lo : t + 1], target, side="right"))


@njit(cache=True)
def _slide_range(
    x: np.ndarray, start: int, end: int, previous_start: int, low: float, high: float
) -> tuple[float, float]:
    """The low and high of ``x[start..end]`` from those of the previous step's span, which
    began at ``previous_start`` (-1: no previous span) and ended at ``end - 1``: rescanned only
    when the value that left was one of its extremes."""
    if previous_start < 0 or (
        previous_start < start and (x[previous_start] == low or x[previous_start] == high)
    ):
        low = high = x[start]
        for j in range(start + 1, end + 1):
            low = min(low, x[j])
            high = max(high, x[j])
        return low, high
    return min(low, x[end]), max(high, x[end])


@njit(cache=True)
def _slide_lags(
    lags: np.ndarray, x: np.ndarray, t: int, g: int, w: int, history: int, search: bool
) -> tuple[float, int]:
    """One step of STOMP's sliding update (Zhu et al. 2016, "Matrix Profile II"): ``lags[L]``,
    the squared distance from the newest subsequence (ending at local ``t``, global ``g``) to
    the one ``L`` samples earlier, from the previous sample's, for every lag from ``w`` (no
    overlap) to the history's length. New lags, and every lag each RESTART samples, are summed
    afresh, so rounding cannot drift and the sums depend on ``g`` alone, never on the cut into
    calls. With ``search``, also the smallest and its lag (a tie goes to the earliest
    subsequence); else ``(1e300, -1)``."""
    longest = min(g - w + 1, history)
    grown = min(g - w, history) if g % RESTART != 0 and g > 2 * w - 1 else w - 1
    for lag in range(grown + 1, longest + 1):
        lags[lag] = _squared_distance(x, t, t - lag, w, 1e300)
    newest = x[t]
    leaving = x[t - w]
    nearest = 1e300
    nearest_lag = -1
    if not search:
        for lag in range(w, grown + 1):
            a = newest - x[t - lag]
            b = leaving - x[t - w - lag]
            lags[lag] += a * a - b * b
        return nearest, nearest_lag
    for lag in range(longest, grown, -1):
        if lags[lag] < nearest:
            nearest = lags[lag]
            nearest_lag = lag
    for lag in range(grown, w - 1, -1):  # updated and searched in one pass
        a = newest - x[t - lag]
        b = leaving - x[t - w - lag]
        d = lags[lag] + (a * a - b * b)
        lags[lag] = d
        if d < nearest:
            nearest = d
            nearest_lag = lag
    return nearest, nearest_lag


@njit(cache=True)
def _advance(
    vector: np.ndarray,
    stamps: np.ndarray,
    values: np.ndarray,
    history: int,
    w: int,
    seasonal_days: int,
    warmup: int,
    alpha: float,
    average: int,
    rest: int,
    rest_level: float,
    range_gain: float,
    weekly: int,
    mean_floor: float,
    variance_floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    buffer = history + w
    seen = int(vector[1])
    kept = min(seen, buffer)
    x_at = STATE_HEADER
    t_at = STATE_HEADER + buffer
    c_at = STATE_HEADER + 2 * buffer
    d_at = c_at + CHANNELS * (4 + average)  # the squared distance at each lag
    # The kept history (oldest first) followed by the new samples: global index g is local
    # index g - base, so the loop below is the same whatever the cut into calls.
    n_new = len(values)
    x = np.empty(kept + n_new)
    ts = np.empty(kept + n_new)
    x[:kept] = vector[x_at + buffer - kept : x_at + buffer]
    ts[:kept] = vector[t_at + buffer - kept : t_at + buffer]
    x[kept:] = values
    ts[kept:] = stamps
    base = seen - kept
    expected = np.empty(n_new)
    scores = np.zeros(n_new)
    raw = np.zeros(CHANNELS)
    averages = (average, average, 1)
    log_floor = math.log(LOG_FLOOR)
    lags = vector[d_at : d_at + history + 1]  # a view: updated in place
    # The history's range, and the range of the history before the newest ``average`` samples,
    # both kept as the window slides.
    low = high = 0.0
    window_lo = -1
    before_low = before_high = 0.0
    before_lo = -1
    for i in range(n_new):
        t = kept + i
        g = base + t
        expected[i] = x[t - 1] if t > 0 else x[t]
        raw[:] = 0.0
        span_lo = max(0, g - history) - base
        low, high = _slide_range(x, span_lo, t, window_lo, low, high)
        window_lo = span_lo
        before = t - average
        if before >= span_lo:
            before_low, before_high = _slide_range(
                x, span_lo, before, before_lo, before_low, before_high
            )
            before_lo = span_lo
        else:
            before_lo = -1
        channels_speak = g >= 3 * w and high > low  # enough history, and not all one value
        nearest, nearest_lag = 1e300, -1
        if g >= 2 * w - 1:
            nearest, nearest_lag = _slide_lags(lags, x, t, g, w, history, channels_speak)
        if channels_speak:
            lo = max(w - 1, g - history) - base
            hi = t - w  # exclude trivial matches that overlap the newest subsequence
            span = high - low
            if nearest_lag >= 0:
                raw[0] = math.sqrt(max(nearest, 0.0) / w) / span
                expected[i] = x[t - nearest_lag]
            season_best = 1e300
            week_back = 1e300
            week_found = False
            if weekly != WEEKLY_OFF:
                s = _at_or_before(ts, lo, t, ts[t] - 7 * DAY_SECONDS)
                week_found = lo <= s <= hi
                if week_found:
                    week_back = _squared_distance(x, t, s, w, 1e300)
            if weekly == WEEKLY_AUTO and week_found:
                day = _at_or_before(ts, lo, t, ts[t] - DAY_SECONDS)
                if lo <= day <= hi:
                    floor = WEEKLY_FLOOR * w * span * span
                    day_back = _squared_distance(x, t, day, w, 1e300)
                    if vector[6] == 0:
                        vector[5] = ts[t]
                    vector[4] += math.log((week_back + floor) / (day_back + floor))
                    vector[6] += 1.0
            if weekly == WEEKLY_ON or (
                weekly == WEEKLY_AUTO
                and vector[6] > 0
                and ts[t] - vector[5] >= WEEKLY_EVIDENCE_DAYS * DAY_SECONDS
                and vector[4] / vector[6] < math.log(WEEKLY_RATIO)
            ):
                season_best = week_back  # none within the history: the nearest day, below
            # the nearest of the past days (also for weekly, until the history spans a week),
            # each at the same time k days back, which may be the history's oldest
            for k in range(1, seasonal_days + 1 if season_best == 1e300 else 1):
                s = _at_or_before(ts, lo, t, ts[t] - k * DAY_SECONDS)
                if s < lo:
                    break
                if s <= hi:
                    d = _squared_distance(x, t, s, w, season_best)
                    season_best = min(season_best, d)
            if season_best < 1e300:
                raw[1] = math.sqrt(season_best / w) / span
            excess = 0.0
            if before_lo >= 0:
                excess = max(0.0, x[t] - before_high, before_low - x[t]) / span
            raw[2] = max(raw[0], min(1.0, range_gain * excess))
        # Anomaly likelihood per channel.
        tail = 1.0
        for c in range(CHANNELS):
            at_c = c_at + c * (4 + average)
            size = averages[c]
            slot = at_c + 4 + g % size
            vector[at_c + 3] += raw[c] - vector[slot]
            vector[slot] = raw[c]
            mean_raw = vector[at_c + 3] / min(g + 1, size)
            mean = vector[at_c]
            variance = vector[at_c + 1]
            count = vector[at_c + 2]
            if count >= warmup:
                z = (mean_raw - max(mean, mean_floor)) / math.sqrt(max(variance, variance_floor))
                if z > 0:
                    tail = min(tail, 0.5 * math.erfc(z / math.sqrt(2.0)))
            rate = alpha if count >= 1.0 / alpha else 1.0 / (count + 1.0)
            delta = mean_raw - mean
            vector[at_c] = mean + rate * delta
            vector[at_c + 1] = (1.0 - rate) * (variance + rate * delta * delta)
            vector[at_c + 2] = count + 1.0
        tail = min(1.0, tail * CHANNELS)
        # Calibrated score, red-point filter and rest period.
        reported = tail
        if tail <= RED_TAIL and vector[2] <= RED_TAIL:
            reported = RED_REPORT
        vector[2] = tail
        value = min(1.0, max(0.0, math.log(LOG_FLOOR + reported) / log_floor))
        if vector[3] > 0:
            vector[3] -= 1.0
            value = min(value, 0.9 * rest_level)
        elif value >= rest_level:
            vector[3] = rest
        scores[i] = value
    # Keep the newest ``buffer`` samples.
    n = kept + n_new
    keep = min(n, buffer)
    vector[x_at + buffer - keep : x_at + buffer] = x[n - keep :]
    vector[t_at + buffer - keep : t_at + buffer] = ts[n - keep :]
    vector[1] = seen + n_new
    return expected, scores
