-- Bounded growth: the large serving and history tables become partitioned by day on their time
-- column, so retention drops whole days (no DELETE, no bloat) and a dashboard's time filter
-- reads only the days it asks for. A DEFAULT partition takes rows of days that have no
-- partition yet (a replay of last year, or the days before maintenance first ran).
-- lambdawatch_apply_retention (below) is what the retention DAG calls; it runs as the owner
-- (SECURITY DEFINER) because only an owner may create or drop partitions, and only the batch
-- role may execute it (granted with the other privileges, lambdawatch.core.db).

CREATE FUNCTION pg_temp.partition_by_day(tbl text, col text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    old text := tbl || '_unpartitioned';
    pk text;
    indexes text[];
    index_sql text;
    v record;
    d date;
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl::regclass) = 'p' THEN
        RETURN;
    END IF;
    -- The views reading it, directly or through other views: dropped, then made again on the
    -- new table from their own definitions (a view follows a renamed table, not its name).
    CREATE TEMP TABLE IF NOT EXISTS saved_views (name text, definition text, depth int);
    TRUNCATE saved_views;
    INSERT INTO saved_views
    WITH RECURSIVE reading(view_oid, depth) AS (
        SELECT DISTINCT r.ev_class, 1
        FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.refobjid = tbl::regclass AND r.ev_class <> tbl::regclass
        UNION
        SELECT DISTINCT r.ev_class, reading.depth + 1
        FROM reading
        JOIN pg_depend d ON d.refobjid = reading.view_oid
        JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> reading.view_oid
    )
    SELECT view_oid::regclass::text, pg_get_viewdef(view_oid), max(depth)
    FROM reading GROUP BY view_oid;
    FOR v IN SELECT name FROM saved_views ORDER BY depth DESC LOOP
        EXECUTE format('DROP VIEW IF EXISTS %s', v.name);
    END LOOP;

    SELECT pg_get_constraintdef(c.oid) INTO pk
    FROM pg_constraint c WHERE c.conrelid = tbl::regclass AND c.contype = 'p';
    SELECT coalesce(array_agg(i.indexdef), '{}') INTO indexes
    FROM pg_indexes i
    WHERE i.schemaname = 'public' AND i.tablename = tbl
      AND i.indexname <> (SELECT conname FROM pg_constraint
                          WHERE conrelid = tbl::regclass AND contype = 'p');
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
    EXECUTE format(
        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
        'PARTITION BY RANGE (%I)', tbl, old, col);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    FOR d IN EXECUTE format(
        'SELECT DISTINCT (%I AT TIME ZONE ''UTC'')::date FROM %I ORDER BY 1', col, old)
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
            tbl || '_p' || to_char(d, 'YYYYMMDD'), tbl,
            (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', tbl, old);
    EXECUTE format('DROP TABLE %I', old);
    EXECUTE format('ALTER TABLE %I ADD %s', tbl, pk);
    FOREACH index_sql IN ARRAY indexes LOOP  -- "CREATE INDEX x ON public.tbl ...": the new one
        EXECUTE index_sql;
    END LOOP;

    FOR v IN SELECT name, definition FROM saved_views ORDER BY depth LOOP
        EXECUTE format('CREATE VIEW %s AS %s', v.name, v.definition);
    END LOOP;
END
$fn$;

SELECT pg_temp.partition_by_day('rt_cpu_windows', 'window_start');
SELECT pg_temp.partition_by_day('rt_ip_windows', 'window_start');
SELECT pg_temp.partition_by_day('rt_server_status', 'window_start');
SELECT pg_temp.partition_by_day('rt_cdn_clusters', 'ts');
SELECT pg_temp.partition_by_day('ip_history', 'ts');

-- Weather stays one table (12 cities a minute), but the Weather dashboard filters it by time:
-- its key leads with the city.
CREATE INDEX IF NOT EXISTS rt_weather_time_idx ON rt_weather (ts);

-- Retention of one table, from the retention DAG: for a partitioned table, the partitions of
-- the next days_ahead days are made (moving any rows the DEFAULT partition took for them), and
-- every day older than keep_days is dropped (and deleted from DEFAULT); for a plain table the
-- old rows are deleted. Only the tables named here; keep_days of at least 1.
CREATE OR REPLACE FUNCTION lambdawatch_apply_retention(
    tbl text, keep_days integer, days_ahead integer,
    OUT partitions_created integer, OUT partitions_dropped integer, OUT rows_deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    col text;
    today date := (now() AT TIME ZONE 'UTC')::date;
    horizon date := today - keep_days;
    d date;
    part record;
    name text;
    upper_bound timestamptz;
    moved bigint;
BEGIN
    col := CASE tbl
        WHEN 'rt_cpu_windows' THEN 'window_start'
        WHEN 'rt_ip_windows' THEN 'window_start'
        WHEN 'rt_server_status' THEN 'window_start'
        WHEN 'rt_cdn_clusters' THEN 'ts'
        WHEN 'ip_history' THEN 'ts'
        WHEN 'speed_layer_progress' THEN 'batch_ts'
        WHEN 'anomalies' THEN 'window_start'
    END;
    IF col IS NULL THEN
        RAISE EXCEPTION 'no retention for table %', tbl;
    END IF;
    IF keep_days < 1 OR days_ahead < 0 THEN
        RAISE EXCEPTION 'keep_days must be >= 1 and days_ahead >= 0 (got %, %)',
            keep_days, days_ahead;
    END IF;
    partitions_created := 0;
    partitions_dropped := 0;
    rows_deleted := 0;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl::regclass) <> 'p' THEN
        EXECUTE format('DELETE FROM %I WHERE %I < %L', tbl, col,
                       horizon::timestamp AT TIME ZONE 'UTC');
        GET DIAGNOSTICS rows_deleted = ROW_COUNT;
        RETURN;
    END IF;
    FOR d IN SELECT generate_series(today, today + days_ahead, interval '1 day')::date LOOP
        name := tbl || '_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       name, tbl);
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved',
            tbl || '_default', col, d::timestamp AT TIME ZONE 'UTC',
            col, (d + 1)::timestamp AT TIME ZONE 'UTC', name);
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       tbl, name, d::timestamp AT TIME ZONE 'UTC',
                       (d + 1)::timestamp AT TIME ZONE 'UTC');
        partitions_created := partitions_created + 1;
    END LOOP;
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = tbl::regclass
    LOOP
        CONTINUE WHEN part.bound = 'DEFAULT';
        upper_bound := substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz;
        IF upper_bound <= horizon::timestamp AT TIME ZONE 'UTC' THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            partitions_dropped := partitions_dropped + 1;
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < %L', tbl || '_default', col,
                   horizon::timestamp AT TIME ZONE 'UTC');
    GET DIAGNOSTICS rows_deleted = ROW_COUNT;
END
$fn$;
REVOKE ALL ON FUNCTION lambdawatch_apply_retention(text, integer, integer) FROM PUBLIC;
