"""City weather for the 12 largest French cities: temperature and feels-like.

Simulated mode: annual and daily cycles per city (bundled climate table) plus smooth weather
noise; feels-like is Steadman's apparent temperature from humidity and wind, so
``temperature - feels_like`` moves with the weather, not at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from generators.common import Batch, day_of_year, hour_of_day, read_table
from generators.streams import iso_strings, normal, sample_grid, stream_key, ticks

SOURCE = "weather"


def cities() -> list[dict[str, str]]:
    return list(read_table("french_cities.csv"))


def apparent_temperature(
    temperature: npt.ArrayLike, humidity: npt.ArrayLike, wind_ms: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Steadman's apparent temperature (the Australian BoM formula), in °C."""
    t = np.asarray(temperature, dtype=np.float64)
    vapour = np.asarray(humidity) / 100 * 6.105 * np.exp(17.27 * t / (237.7 + t))
    return t + 0.33 * vapour - 0.70 * np.asarray(wind_ms) - 4.0


def _smooth(
    seed: int, name: str, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64], hours: float
) -> npt.NDArray[np.float64]:
    """Noise that drifts over ``hours``: linear interpolation between hourly-grid draws."""
    step = int(hours * 3_600_000)
    left = ts // step
    frac = (ts - left * step) / step
    a = normal(seed, stream_key(SOURCE, name), keys, left)
    b = normal(seed, stream_key(SOURCE, name), keys, left + 1)
    return a * (1 - frac) + b * frac


@dataclass(frozen=True)
class WeatherGenerator:
    interval_ms: int = 60_000
    seed: int = 1

    def generate(self, start_ms: int, end_ms: int) -> Batch:
        table = cities()
        names = [c["city"] for c in table]
        batch = Batch(SOURCE)
        times = ticks(start_ms, end_ms, self.interval_ms)
        if not len(times):
            return batch
        rows, ts, keys, tick = sample_grid(names, times, self.interval_ms)

        def column(name: str) -> npt.NDArray[np.float64]:
            return np.array([float(c[name]) for c in table])[rows]

        lon, lat = column("lon"), column("lat")
        annual = column("annual_amplitude_c") * np.cos(
            2 * np.pi * (day_of_year(ts) - 200) / 365.2425
        )
        daily = column("daily_amplitude_c") * np.cos(2 * np.pi * (hour_of_day(ts, lon) - 15) / 24)
        weather = 2.5 * _smooth(self.seed, "temp", keys, ts, 6) + 0.15 * normal(
            self.seed, stream_key(SOURCE, "t"), keys, tick
        )
        temperature = column("mean_c") + annual + daily + weather
        humidity = np.clip(70 - 1.2 * daily + 12 * _smooth(self.seed, "hum", keys, ts, 8), 20, 100)
        wind = np.maximum(
            column("mean_wind_ms") * (1 + 0.5 * _smooth(self.seed, "wind", keys, ts, 3)), 0
        )
        feels = apparent_temperature(temperature, humidity, wind)

        order = np.lexsort((rows, ts))
        stamps, ts_list = iso_strings(ts[order]), ts[order].tolist()
        t_l, f_l = np.round(temperature[order], 2).tolist(), np.round(feels[order], 2).tolist()
        lat_l, lon_l = lat[order].tolist(), lon[order].tolist()
        for i, row in enumerate(rows[order].tolist()):
            city = names[row]
            batch.keys.append(city)
            batch.events.append(
                {
                    "event_id": f"weather:{city}:{ts_list[i]}",
                    "city": city,
                    "lat": lat_l[i],
                    "lon": lon_l[i],
                    "temperature": t_l[i],
                    "feels_like": f_l[i],
                    "timestamp": stamps[i],
                }
            )
        return batch
