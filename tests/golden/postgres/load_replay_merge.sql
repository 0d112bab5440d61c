CREATE TEMP TABLE "tidemark_staging" (
    "id" bigint,
    "updated_at" timestamp,
    "amount" numeric(12, 2),
    "note" text,
    "payload" jsonb,
    "_tidemark_run" INTEGER
);

COPY "tidemark_staging" ("id", "updated_at", "amount", "note", "payload") FROM STDIN WITH (FORMAT binary);

UPDATE "tidemark_staging" SET "_tidemark_run" = 0 WHERE "_tidemark_run" IS NULL;

COPY "tidemark_staging" ("id", "updated_at", "amount", "note", "payload") FROM STDIN WITH (FORMAT binary);

UPDATE "tidemark_staging" SET "_tidemark_run" = 1 WHERE "_tidemark_run" IS NULL;

SELECT CAST(CASE WHEN COUNT(*) = 0 THEN '0' ELSE 'tidemark: rows staged differ from the run manifests in ' || CAST(COUNT(*) AS VARCHAR(20)) || ' run(s)' END AS INTEGER) AS "verified"
FROM (SELECT CAST(0 AS INTEGER) AS "run", CAST('20261127T041530123Z-0000000000ab' AS VARCHAR(64)) AS "run_id", CAST(1200 AS BIGINT) AS "expected", CAST(2 AS BIGINT) AS "files"
    UNION ALL SELECT CAST(1 AS INTEGER), CAST('20261127T051530123Z-0000000000cd' AS VARCHAR(64)), CAST(7 AS BIGINT), CAST(1 AS BIGINT)) AS "e"
LEFT JOIN (SELECT "_tidemark_run", COUNT(*) AS "staged" FROM "tidemark_staging" GROUP BY "_tidemark_run") AS "s"
    ON "s"."_tidemark_run" = "e"."run"
WHERE COALESCE("s"."staged", 0) <> "e"."expected";

SELECT CAST(CASE WHEN COUNT(*) = 0 THEN '0' ELSE 'tidemark: keys held twice with one cursor value in a run: ' || CAST(COUNT(*) AS VARCHAR(20)) END AS INTEGER) AS "verified"
FROM (
    SELECT "_tidemark_run" FROM "tidemark_staging"
    GROUP BY "_tidemark_run", "id", "updated_at"
    HAVING COUNT(*) > 1
) AS "twice";

DELETE FROM "tidemark_staging"
WHERE "_tidemark_run" IN (
    SELECT "e"."run" FROM (SELECT CAST(0 AS INTEGER) AS "run", CAST('20261127T041530123Z-0000000000ab' AS VARCHAR(64)) AS "run_id", CAST(1200 AS BIGINT) AS "expected", CAST(2 AS BIGINT) AS "files"
    UNION ALL SELECT CAST(1 AS INTEGER), CAST('20261127T051530123Z-0000000000cd' AS VARCHAR(64)), CAST(7 AS BIGINT), CAST(1 AS BIGINT)) AS "e"
    JOIN "analytics"."tidemark_load_ledger" AS "l" ON "l"."run_id" = "e"."run_id" AND "l"."target_table" = 'orders'
);

CREATE TEMP TABLE "tidemark_deduped" AS
SELECT "id", "updated_at", "amount", "note", "payload", "_tidemark_run" FROM (
    SELECT "id", "updated_at", "amount", "note", "payload", "_tidemark_run",
        ROW_NUMBER() OVER (PARTITION BY "id" ORDER BY "updated_at" DESC NULLS LAST, "_tidemark_run" DESC) AS "_tidemark_rank"
    FROM "tidemark_staging"
) AS "ranked"
WHERE "_tidemark_rank" = 1
    AND NOT EXISTS (SELECT 1 FROM "analytics"."orders" AS "t" WHERE "t"."id" = "ranked"."id" AND "t"."updated_at" >= "ranked"."updated_at");

INSERT INTO "analytics"."tidemark_load_ledger" ("run_id", "pipeline", "source_table", "target_table", "files", "rows_staged", "rows_inserted", "rows_deleted", "loaded_at")
SELECT "e"."run_id", 'p', 'shop.orders', 'orders', "e"."files", COALESCE("s"."n", 0), COALESCE("d"."n", 0), COALESCE("x"."n", 0), CAST('2026-11-27 06:00:00.123456' AS TIMESTAMP)
FROM (SELECT CAST(0 AS INTEGER) AS "run", CAST('20261127T041530123Z-0000000000ab' AS VARCHAR(64)) AS "run_id", CAST(1200 AS BIGINT) AS "expected", CAST(2 AS BIGINT) AS "files"
    UNION ALL SELECT CAST(1 AS INTEGER), CAST('20261127T051530123Z-0000000000cd' AS VARCHAR(64)), CAST(7 AS BIGINT), CAST(1 AS BIGINT)) AS "e"
LEFT JOIN (SELECT "_tidemark_run", COUNT(*) AS "n" FROM "tidemark_staging" GROUP BY "_tidemark_run") AS "s" ON "s"."_tidemark_run" = "e"."run"
LEFT JOIN (SELECT "_tidemark_run", COUNT(*) AS "n" FROM "tidemark_deduped" GROUP BY "_tidemark_run") AS "d" ON "d"."_tidemark_run" = "e"."run"
LEFT JOIN (
    SELECT "tidemark_deduped"."_tidemark_run", COUNT(*) AS "n" FROM "analytics"."orders"
    JOIN "tidemark_deduped" ON "analytics"."orders"."id" = "tidemark_deduped"."id"
    GROUP BY "tidemark_deduped"."_tidemark_run"
) AS "x" ON "x"."_tidemark_run" = "e"."run"
LEFT JOIN "analytics"."tidemark_load_ledger" AS "l" ON "l"."run_id" = "e"."run_id" AND "l"."target_table" = 'orders'
WHERE "l"."run_id" IS NULL;

DELETE FROM "analytics"."orders"
USING "tidemark_deduped"
WHERE "analytics"."orders"."id" = "tidemark_deduped"."id";

INSERT INTO "analytics"."orders" ("id", "updated_at", "amount", "note", "payload")
SELECT "id", "updated_at", "amount", "note", "payload" FROM "tidemark_deduped";

DROP TABLE "tidemark_deduped";

DROP TABLE "tidemark_staging";

SELECT "run_id", "rows_staged", "rows_inserted", "rows_deleted" FROM "analytics"."tidemark_load_ledger"
WHERE "target_table" = 'orders' AND "run_id" IN ('20261127T041530123Z-0000000000ab', '20261127T051530123Z-0000000000cd')
ORDER BY "run_id";
