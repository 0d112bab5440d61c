CREATE TABLE IF NOT EXISTS "analytics"."orders" (
    "id" BIGINT NOT NULL,
    "updated_at" TIMESTAMP,
    "amount" DECIMAL(12, 2),
    "note" VARCHAR(200),
    "payload" SUPER,
    PRIMARY KEY ("id")
)
DISTSTYLE KEY
DISTKEY ("id")
SORTKEY ("updated_at")
ENCODE AUTO;

CREATE TABLE IF NOT EXISTS "analytics"."tidemark_load_ledger" (
    "run_id" VARCHAR(64) NOT NULL,
    "pipeline" VARCHAR(64) NOT NULL,
    "source_table" VARCHAR(512) NOT NULL,
    "target_table" VARCHAR(512) NOT NULL,
    "files" BIGINT NOT NULL,
    "rows_staged" BIGINT NOT NULL,
    "rows_inserted" BIGINT NOT NULL,
    "rows_deleted" BIGINT NOT NULL,
    "loaded_at" TIMESTAMP NOT NULL,
    PRIMARY KEY ("run_id", "target_table")
);
