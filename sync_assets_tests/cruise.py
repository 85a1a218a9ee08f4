"""A small cruise-booking schema with the edge cases real schemas have, in production and staging."""

from __future__ import annotations

from sync_assets.demo import data

SCHEMA = data.SCHEMA

# The same generator fills both sides; production then moves on (PRODUCTION_CHANGES).
DATA = """
INSERT INTO cruise_lines (name, country, founded, metadata)
SELECT 'Line ' || i, (ARRAY['US', 'IT', 'NO', 'DE', 'GB'])[i], date '1960-01-01' + i * 400,
       jsonb_build_object('rank', i, 'tags', jsonb_build_array('a', i))
FROM generate_series(1, 5) i;

INSERT INTO ships (cruise_line_id, name, capacity, amenities, launched)
SELECT 1 + i % 5, 'Ship ' || i, 1000 + i * 150, ARRAY['pool', 'spa ' || i],
       timestamptz '2000-01-01 00:00+00' + i * interval '90 days'
FROM generate_series(1, 12) i;

INSERT INTO ports (code, name, country, location, tz)
SELECT 'P' || lpad(i::text, 2, '0'), 'Port ' || i, 'C' || (i % 7), point(i * 1.5, -i * 2.25), 'UTC'
FROM generate_series(0, 19) i;

INSERT INTO regions (id, parent_id, name) VALUES
    (1, NULL, 'World'), (2, 1, 'Europe'), (3, 1, 'Americas'), (4, 1, 'Asia'),
    (5, 2, 'Baltic'), (6, 2, 'Mediterranean'), (7, 3, 'Caribbean'), (8, 3, 'Alaska');

INSERT INTO cruises (id, ship_id, region_id, departure_port, departs_on, nights, status, base_price, tags,
                     details, created_at)
SELECT i, 1 + i % 12, 1 + i % 8, 'P' || lpad((i % 20)::text, 2, '0'), date '2026-01-01' + i, 3 + i % 11,
       (ARRAY['scheduled', 'sailing', 'completed', 'cancelled'])[1 + i % 4]::cruise_status,
       499.99 + i * 10, ARRAY['t' || (i % 3), 'family'], jsonb_build_object('deck', i % 9, 'wifi', i % 2 = 0),
       timestamptz '2025-06-01 12:00+00' + i * interval '1 hour'
FROM generate_series(1, 200) i;
SELECT setval(pg_get_serial_sequence('cruises', 'id'), 200);

INSERT INTO itineraries (cruise_id, day, port_code, arrive, depart, notes)
SELECT c, d, 'P' || lpad(((c + d) % 20)::text, 2, '0'), time '08:00' + d * interval '1 minute',
       time '17:00', CASE WHEN d = 2 THEN 'sea day ' || c END
FROM generate_series(1, 200) c, generate_series(1, 3) d;

INSERT INTO cabin_categories (code, name, description) VALUES
    ('INS', 'Inside', 'No window'), ('OCV', 'Ocean view', 'A window'),
    ('BAL', 'Balcony', 'Private balcony'), ('STE', 'Suite', NULL);

INSERT INTO pricing (cruise_id, cabin_category, price, currency, valid_from, valid_to)
SELECT c, cat, 400 + c * 3 + k * 250, 'USD', timestamptz '2025-01-01 00:00+00' + c * interval '1 day',
       CASE WHEN k = 3 THEN 'infinity'::timestamptz ELSE timestamptz '2027-01-01 00:00+00' END
FROM generate_series(1, 200) c, unnest(ARRAY['INS', 'OCV', 'BAL', 'STE']) WITH ORDINALITY AS u(cat, k);

INSERT INTO price_snapshots (cruise_id, captured_at, cheapest)
SELECT c, timestamptz '2026-02-01 00:00+00' + s * interval '1 day', 400 + c * 3 - s
FROM generate_series(1, 200) c, generate_series(1, 2) s;

INSERT INTO webhook_events (received_at, source, payload, raw)
SELECT timestamptz '2026-03-01 00:00+00' + (i % 40) * interval '1 minute', 'stripe',
       jsonb_build_object('event', i % 40), decode(md5((i % 40)::text), 'hex')
FROM generate_series(1, 50) i;
"""

PRODUCTION_CHANGES = """
-- cruises 191..200 are gone, with everything hanging off them
DELETE FROM pricing WHERE cruise_id > 190;
DELETE FROM price_snapshots WHERE cruise_id > 190;
DELETE FROM cruises WHERE id > 190;
-- a new line with a new ship, new cruises
INSERT INTO cruise_lines (name, country, metadata) VALUES ('Line 6', 'FR', '{"new": true}');
INSERT INTO ships (cruise_line_id, name, capacity) VALUES (6, 'Ship 13', 2100);
INSERT INTO cruises (ship_id, region_id, departure_port, departs_on, nights, base_price, details)
SELECT 13, 6, 'P03', date '2026-09-01' + i, 7, 899.50 + i, '{"new": true}'
FROM generate_series(201, 220) i;
INSERT INTO itineraries (cruise_id, day, port_code) SELECT c, 1, 'P03' FROM generate_series(201, 220) c;
INSERT INTO pricing (cruise_id, cabin_category, price, valid_from)
SELECT c, 'BAL', 1500 + c, timestamptz '2026-05-01 00:00+00' FROM generate_series(201, 220) c;
-- some rows changed
UPDATE cruises SET base_price = base_price + 100, status = 'cancelled' WHERE id % 17 = 0;
UPDATE ports SET name = 'Port Ten (renamed)' WHERE code = 'P10';
UPDATE ports SET location = point(1, 1) WHERE code = 'P11';
UPDATE regions SET parent_id = 3 WHERE id = 6;
INSERT INTO regions (id, parent_id, name) VALUES (9, 4, 'Japan'), (10, 9, 'Okinawa');
UPDATE cabin_categories SET description = 'Two rooms' WHERE code = 'STE';
UPDATE pricing SET price = price * 1.1 WHERE cruise_id % 10 = 0;
INSERT INTO webhook_events (received_at, source, payload) VALUES ('2026-04-01 00:00+00', 'adyen', '{}');
-- production's own users, which staging must never receive
INSERT INTO users (email, name) SELECT 'prod-user-' || i || '@example.com', 'Prod ' || i FROM generate_series(1, 30) i;
INSERT INTO quote_requests (user_id, cruise_id, note) SELECT i, i, 'prod quote' FROM generate_series(1, 30) i;
INSERT INTO saved_searches (user_id, query) SELECT i, '{"q": "prod"}' FROM generate_series(1, 30) i;
"""

# Staging's own people, some asking about cruises production has since deleted (195..200).
STAGING_OWN = """
INSERT INTO users (email, name) SELECT 'staging-user-' || i || '@example.com', 'Tester ' || i
FROM generate_series(1, 10) i;
INSERT INTO quote_requests (user_id, cruise_id, note)
SELECT 1 + i % 10, CASE WHEN i <= 4 THEN 194 + i ELSE i END, 'staging quote ' || i FROM generate_series(1, 25) i;
INSERT INTO saved_searches (user_id, query)
SELECT 1 + i % 10, jsonb_build_object('port', 'P0' || (i % 10)) FROM generate_series(1, 10) i;

-- staging's own objects on synced tables, which must survive every sync
CREATE INDEX cruises_departs_on ON cruises (departs_on);
CREATE VIEW upcoming_cruises AS SELECT id, departs_on, base_price FROM cruises WHERE status = 'scheduled';
"""

PRESERVED = ("users", "quote_requests", "saved_searches")
SYNCED = (
    "cabin_categories", "cruise_lines", "cruises", "itineraries", "ports", "price_snapshots", "pricing",
    "regions", "ships", "webhook_events",
)  # fmt: skip

CONFIG_YAML = """
preserve: [users, quote_requests, saved_searches]
"""

ALL_STAGING = [*SYNCED, *PRESERVED]

# Long enough that the swap waits for the test's row lock instead of timing out.
PATIENT = CONFIG_YAML + "lock_timeout: 120s\nretries: 0\n"

PRICING_LOCK = "SELECT * FROM pricing WHERE cruise_id = 10 FOR UPDATE"
