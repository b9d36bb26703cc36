-- The checkpoint catalogue in the warehouse. Its one source of truth is rules/checkpoints.csv: the sink fills this
-- table from the file when it starts (sinks.writer.Warehouse.load_checkpoints, when the file's version changed),
-- so a new or closed post changes data, not SQL. The crossings' rejects SQL refuses a crossing at an id missing
-- here or outside [open_from, open_until), as schemas.validation does (shekara.reference.Catalogue.refusal);
-- analysts join it for names, regions and kinds of the posts.
-- open_from / open_until are computed by the sink from the local dates `opened` / `closed` with the rules' time
-- zone (the start of `opened`, the start of the day after `closed`), so both sides compare the same instants and
-- never depend on the two time zone databases agreeing.
CREATE TABLE IF NOT EXISTS checkpoints
(
    id String,
    name String,
    kind LowCardinality(String),
    border_country Nullable(String),
    region LowCardinality(String),
    lat Float64,
    lon Float64,
    daily_capacity UInt32,
    opened Nullable(Date32),
    closed Nullable(Date32),
    open_from Nullable(DateTime64(6, 'UTC')),
    open_until Nullable(DateTime64(6, 'UTC')),
    catalogue_version String
)
ENGINE = MergeTree
ORDER BY id;

-- shekara.reference.Catalogue.known: the reason for an id the catalogue does not list.
CREATE OR REPLACE FUNCTION shekara_not_checkpoint AS (s) ->
    concat('is not a checkpoint of the catalogue (rules/checkpoints.csv); got \'', s, '\'');
