-- Fields a detector does not need are optional in events (a user's two-column file reaches
-- the detectors): the serving tables that copy them keep a missing one as null.
ALTER TABLE rt_cdn_clusters ALTER COLUMN pop DROP NOT NULL;
ALTER TABLE rt_cdn_clusters ALTER COLUMN region DROP NOT NULL;
ALTER TABLE rt_weather ALTER COLUMN lat DROP NOT NULL;
ALTER TABLE rt_weather ALTER COLUMN lon DROP NOT NULL;
ALTER TABLE rt_weather ALTER COLUMN feels_like DROP NOT NULL;
ALTER TABLE rt_weather ALTER COLUMN temperature_minus_feels_like DROP NOT NULL;
