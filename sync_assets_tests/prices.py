"""A small incremental schema: regions and prices, each with updated_at, and staging's own quotes."""

SCHEMA = """
CREATE TABLE regions (
    id int PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE prices (
    id bigint PRIMARY KEY,
    region_id int REFERENCES regions (id),
    amount numeric(10, 2),
    updated_at timestamptz DEFAULT now()
);
"""
# Production's application keeps updated_at current, as most applications do.
TOUCH = """
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER regions_touch BEFORE UPDATE ON regions FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER prices_touch BEFORE UPDATE ON prices FOR EACH ROW EXECUTE FUNCTION touch();
"""
DATA = """
INSERT INTO regions SELECT i, 'R' || i, 'region ' || i, '2020-01-01' FROM generate_series(1, 20) i;
INSERT INTO prices SELECT i, 1 + i % 20, i * 1.5, '2020-01-01' FROM generate_series(1, 198) i;
-- a NULL says nothing about when a row changed: such rows are read every time
INSERT INTO prices VALUES (199, 1, 1, NULL), (200, 2, 2, NULL);
"""
# Staging's own table, pointing at synced rows by key and by another unique column.
STAGING_OWN = """
CREATE TABLE quotes (
    id serial PRIMARY KEY,
    price_id bigint REFERENCES prices (id),
    region_code text REFERENCES regions (code),
    note text
);
"""
CONFIG = "mode: incremental\nincremental_overlap: 0s\n"
TABLES = ["regions", "prices"]
