"""A film-rental schema with the shapes widely used real databases have (modelled on the sample databases
PostgreSQL users know), for production and an older staging:

- `payment` partitioned by month, each partition declaring its own foreign keys to customer, rental and
  staff (as a dump of such a database creates them);
- `note` with children by table inheritance (`film_note`, `customer_note`), each with its own foreign key;
- a cycle of NOT NULL, non-deferrable foreign keys: store.manager_staff_id <-> staff.store_id;
- sequences not owned by their column: actor's `DEFAULT nextval('actor_actor_id_seq')` without OWNED BY,
  and `shared_id_seq` drawn by both category and language;
- a domain (`year`), enums and an array of enums, a tsvector kept by a trigger and a generated tsvector,
  numeric, char(n), timestamps;
- in staging only: the `last_update = now()` trigger on every table, the fulltext trigger, views.
"""

from __future__ import annotations

MONTHS = ("2022_01", "2022_02", "2022_03", "2022_04", "2022_05", "2022_06", "2022_07")


def _partitions() -> str:
    parts = []
    for i, month in enumerate(MONTHS):
        y, m = month.split("_")
        nxt = MONTHS[i + 1].replace("_", "-") if i + 1 < len(MONTHS) else "2022-08"
        parts.append(
            f"CREATE TABLE payment_p{month} PARTITION OF payment FOR VALUES FROM ('{y}-{m}-01') TO ('{nxt}-01');"
        )
        for col, ref in (("customer_id", "customer"), ("rental_id", "rental"), ("staff_id", "staff")):
            parts.append(
                f"ALTER TABLE payment_p{month} ADD CONSTRAINT payment_p{month}_{col}_fkey"
                f" FOREIGN KEY ({col}) REFERENCES {ref} ({col});"
            )
    return "\n".join(parts)


def schema(cycle_not_null: bool = True) -> str:
    """The DDL both sides share. cycle_not_null: staff.store_id is NOT NULL (the cycle no order of inserts
    satisfies), else nullable (a cycle the sync links after writing)."""
    store_id = "integer NOT NULL" if cycle_not_null else "integer"
    return f"""
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE TYPE feature AS ENUM ('Trailers', 'Commentaries', 'Deleted Scenes', 'Behind the Scenes');
CREATE DOMAIN year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);

CREATE SEQUENCE actor_actor_id_seq;
CREATE TABLE actor (
    actor_id integer DEFAULT nextval('actor_actor_id_seq') PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE shared_id_seq;
CREATE TABLE category (
    category_id integer DEFAULT nextval('shared_id_seq') PRIMARY KEY,
    name text NOT NULL,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE language (
    language_id integer DEFAULT nextval('shared_id_seq') PRIMARY KEY,
    name character(20) NOT NULL,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE film (
    film_id serial PRIMARY KEY,
    title text NOT NULL,
    description text,
    release_year year,
    language_id integer NOT NULL REFERENCES language,
    rental_rate numeric(4,2) NOT NULL DEFAULT 4.99,
    length smallint,
    rating mpaa_rating DEFAULT 'G',
    special_features feature[],
    fulltext tsvector NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE film_actor (
    actor_id integer NOT NULL REFERENCES actor,
    film_id integer NOT NULL REFERENCES film,
    last_update timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, film_id)
);
CREATE TABLE film_category (
    film_id integer NOT NULL REFERENCES film,
    category_id integer NOT NULL REFERENCES category,
    last_update timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (film_id, category_id)
);
CREATE TABLE address (
    address_id serial PRIMARY KEY,
    address text NOT NULL,
    phone text NOT NULL,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE store (
    store_id serial PRIMARY KEY,
    manager_staff_id integer NOT NULL,
    address_id integer NOT NULL REFERENCES address,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE staff (
    staff_id serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    address_id integer NOT NULL REFERENCES address,
    store_id {store_id} REFERENCES store,
    active boolean NOT NULL DEFAULT true,
    last_update timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE store ADD CONSTRAINT store_manager_staff_id_fkey FOREIGN KEY (manager_staff_id) REFERENCES staff;
CREATE TABLE customer (
    customer_id serial PRIMARY KEY,
    store_id integer NOT NULL REFERENCES store,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text,
    address_id integer NOT NULL REFERENCES address,
    activebool boolean NOT NULL DEFAULT true,
    create_date date NOT NULL DEFAULT current_date,
    last_update timestamptz DEFAULT now()
);
CREATE TABLE inventory (
    inventory_id serial PRIMARY KEY,
    film_id integer NOT NULL REFERENCES film,
    store_id integer NOT NULL REFERENCES store,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rental (
    rental_id serial PRIMARY KEY,
    rental_date timestamptz NOT NULL,
    inventory_id integer NOT NULL REFERENCES inventory,
    customer_id integer NOT NULL REFERENCES customer,
    return_date timestamptz,
    staff_id integer NOT NULL REFERENCES staff,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE payment (
    payment_id serial,
    customer_id integer NOT NULL,
    staff_id integer NOT NULL,
    rental_id integer NOT NULL,
    amount numeric(5,2) NOT NULL,
    payment_date timestamptz NOT NULL,
    PRIMARY KEY (payment_date, payment_id)
) PARTITION BY RANGE (payment_date);
{_partitions()}
CREATE TABLE note (note_id integer PRIMARY KEY, body text NOT NULL);
CREATE TABLE film_note (film_id integer NOT NULL REFERENCES film, PRIMARY KEY (note_id)) INHERITS (note);
CREATE TABLE customer_note (customer_id integer NOT NULL REFERENCES customer, PRIMARY KEY (note_id)) INHERITS (note);
"""


# Rows both sides start from; production then moves on (CHANGES). Timestamps are fixed, so that a row
# staging's own trigger touched differs from production's.
DATA = """
INSERT INTO actor (first_name, last_name, last_update)
SELECT 'First' || i, 'Last' || i, timestamptz '2022-01-01 00:00+00' + i * interval '1 hour'
FROM generate_series(1, 40) i;
INSERT INTO category (name, last_update) SELECT c, timestamptz '2022-01-01 00:00+00'
FROM unnest(ARRAY['Action', 'Comedy', 'Drama', 'Horror']) c;
INSERT INTO language (name, last_update) SELECT l, timestamptz '2022-01-01 00:00+00'
FROM unnest(ARRAY['English', 'Italian', 'Japanese']) l;
INSERT INTO film (title, description, release_year, language_id, rental_rate, length, rating, special_features,
                  fulltext, last_update)
SELECT 'Film ' || i, 'A story number ' || i, 1990 + i % 30, 5 + i % 3, 0.99 + (i % 5), 60 + i % 120,
       (ARRAY['G', 'PG', 'PG-13', 'R', 'NC-17'])[1 + i % 5]::mpaa_rating,
       CASE i % 3 WHEN 0 THEN ARRAY['Trailers'] WHEN 1 THEN ARRAY['Trailers', 'Commentaries'] END::feature[],
       to_tsvector('english', 'Film ' || i || ' A story number ' || i),
       timestamptz '2022-01-02 00:00+00' + i * interval '1 minute'
FROM generate_series(1, 60) i;
INSERT INTO film_actor (actor_id, film_id, last_update)
SELECT 1 + (f * 7 + k) % 40, f, timestamptz '2022-01-03 00:00+00'
FROM generate_series(1, 60) f, generate_series(0, 2) k;
INSERT INTO film_category (film_id, category_id, last_update)
SELECT f, 1 + f % 4, timestamptz '2022-01-03 00:00+00' FROM generate_series(1, 60) f;
INSERT INTO address (address, phone, last_update)
SELECT i || ' Main Street', '555-' || lpad(i::text, 4, '0'), timestamptz '2022-01-01 00:00+00'
FROM generate_series(1, 30) i;
-- the cycle: each store's manager works in it; inserted with the foreign key checked at the end
BEGIN;
ALTER TABLE store ALTER CONSTRAINT store_manager_staff_id_fkey DEFERRABLE INITIALLY DEFERRED;
INSERT INTO store (store_id, manager_staff_id, address_id, last_update)
SELECT s, s, s, timestamptz '2022-01-01 00:00+00' FROM generate_series(1, 3) s;
INSERT INTO staff (staff_id, first_name, last_name, address_id, store_id, last_update)
SELECT i, 'Staff' || i, 'Member' || i, 3 + i, 1 + (i - 1) % 3, timestamptz '2022-01-01 00:00+00'
FROM generate_series(1, 6) i;
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE store ALTER CONSTRAINT store_manager_staff_id_fkey NOT DEFERRABLE;
COMMIT;
SELECT setval('store_store_id_seq', 3), setval('staff_staff_id_seq', 6);
INSERT INTO customer (store_id, first_name, last_name, email, address_id, create_date, last_update)
SELECT 1 + i % 3, 'Cust' || i, 'Omer' || i, 'c' || i || '@example.com', 10 + i % 20, date '2021-12-01' + i,
       timestamptz '2022-01-01 00:00+00'
FROM generate_series(1, 50) i;
INSERT INTO inventory (film_id, store_id, last_update)
SELECT 1 + i % 60, 1 + (i / 7) % 3, timestamptz '2022-01-01 00:00+00' FROM generate_series(1, 120) i;
INSERT INTO rental (rental_date, inventory_id, customer_id, return_date, staff_id, last_update)
SELECT timestamptz '2022-01-05 10:00+00' + i * interval '7 hours', 1 + i % 120, 1 + i % 50,
       timestamptz '2022-01-08 10:00+00' + i * interval '7 hours', 1 + i % 6, timestamptz '2022-01-01 00:00+00'
FROM generate_series(1, 600) i;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
SELECT r.customer_id, r.staff_id, r.rental_id, 0.99 + r.rental_id % 7, r.rental_date + interval '1 hour'
FROM rental r WHERE r.rental_id % 3 <> 0;
INSERT INTO film_note (note_id, body, film_id) SELECT i, 'about film ' || i, i FROM generate_series(1, 10) i;
INSERT INTO customer_note (note_id, body, customer_id) SELECT 100 + i, 'about customer ' || i, i
FROM generate_series(1, 10) i;
INSERT INTO note (note_id, body) VALUES (900, 'a general note');
"""

# Production since staging's copy: a store closed (its manager and staff with it), a new store with a new
# manager, customers and rentals gone and arrived, payments in new months, changed rows everywhere.
CHANGES = """
-- store 3 closes: its rentals, payments, inventory, customers and staff go, and the store itself
DELETE FROM payment WHERE staff_id IN (3, 6) OR customer_id IN (SELECT customer_id FROM customer WHERE store_id = 3)
    OR rental_id IN (SELECT rental_id FROM rental WHERE inventory_id IN (SELECT inventory_id FROM inventory
                                                                          WHERE store_id = 3));
DELETE FROM customer_note WHERE customer_id IN (SELECT customer_id FROM customer WHERE store_id = 3);
DELETE FROM rental WHERE staff_id IN (3, 6) OR customer_id IN (SELECT customer_id FROM customer WHERE store_id = 3)
    OR inventory_id IN (SELECT inventory_id FROM inventory WHERE store_id = 3);
DELETE FROM inventory WHERE store_id = 3;
DELETE FROM customer WHERE store_id = 3;
BEGIN;
ALTER TABLE store ALTER CONSTRAINT store_manager_staff_id_fkey DEFERRABLE INITIALLY DEFERRED;
DELETE FROM staff WHERE store_id = 3;
DELETE FROM store WHERE store_id = 3;
-- store 4 opens with manager 7
INSERT INTO store (store_id, manager_staff_id, address_id, last_update) VALUES (4, 7, 20, '2022-06-01 00:00+00');
INSERT INTO staff (staff_id, first_name, last_name, address_id, store_id, last_update)
VALUES (7, 'New', 'Manager', 21, 4, '2022-06-01 00:00+00');
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE store ALTER CONSTRAINT store_manager_staff_id_fkey NOT DEFERRABLE;
COMMIT;
SELECT setval('store_store_id_seq', 4), setval('staff_staff_id_seq', 7);
-- new actors, categories and languages from the sequences they share or do not own
INSERT INTO actor (first_name, last_name, last_update) VALUES ('New', 'Actor', '2022-06-01 00:00+00');
INSERT INTO category (name, last_update) VALUES ('Documentary', '2022-06-01 00:00+00');
INSERT INTO language (name, last_update) VALUES ('German', '2022-06-01 00:00+00');
-- new customers of the new store, renting and paying in June and July (partitions staging has empty)
INSERT INTO customer (store_id, first_name, last_name, email, address_id, create_date, last_update)
SELECT 4, 'June' || i, 'Customer' || i, NULL, 22, date '2022-06-01', '2022-06-01 00:00+00'
FROM generate_series(1, 5) i;
INSERT INTO inventory (film_id, store_id, last_update) SELECT f, 4, '2022-06-01 00:00+00' FROM generate_series(1, 6) f;
INSERT INTO rental (rental_date, inventory_id, customer_id, return_date, staff_id, last_update)
SELECT timestamptz '2022-06-10 10:00+00' + i * interval '1 day', (SELECT max(inventory_id) FROM inventory) - i % 6,
       (SELECT max(customer_id) FROM customer) - i % 5, NULL, 7, '2022-06-10 00:00+00'
FROM generate_series(1, 40) i;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
SELECT customer_id, staff_id, rental_id, 2.99, rental_date + interval '2 hours'
FROM rental WHERE rental_date >= '2022-06-01';
-- changed rows
UPDATE film SET rental_rate = rental_rate + 1, special_features = ARRAY['Deleted Scenes']::feature[],
                last_update = '2022-06-02 00:00+00' WHERE film_id % 9 = 0;
UPDATE customer SET email = upper(email), last_update = '2022-06-02 00:00+00' WHERE customer_id % 4 = 0;
UPDATE payment SET amount = amount + 0.5 WHERE payment_id % 11 = 0;
UPDATE rental SET return_date = rental_date + interval '2 days', last_update = '2022-06-02 00:00+00'
WHERE return_date IS NULL AND rental_id % 2 = 0;
UPDATE note SET body = body || ' (edited)' WHERE note_id = 900;
INSERT INTO film_note (note_id, body, film_id) VALUES (11, 'about film 11', 11);
"""

# Staging's own objects on the synced tables: the triggers (which must not rewrite synced rows) and views.
STAGING_OWN = """
CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_update = now();
    RETURN NEW;
END $$;
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE a.attname = 'last_update' AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
    LOOP
        EXECUTE format('CREATE TRIGGER last_updated BEFORE UPDATE ON %I FOR EACH ROW'
                       ' EXECUTE FUNCTION last_updated()', t);
    END LOOP;
END $$;
CREATE TRIGGER film_fulltext_trigger BEFORE INSERT OR UPDATE ON film
    FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger(fulltext, 'pg_catalog.simple', title);
CREATE VIEW film_list AS
    SELECT f.film_id, f.title, c.name AS category, f.rental_rate, f.rating
    FROM film f JOIN film_category fc ON fc.film_id = f.film_id JOIN category c ON c.category_id = fc.category_id;
CREATE VIEW sales_by_store AS
    SELECT s.store_id, sum(p.amount) AS total_sales
    FROM payment p JOIN staff st ON st.staff_id = p.staff_id JOIN store s ON s.store_id = st.store_id
    GROUP BY s.store_id;
"""

SYNCED = (
    "actor", "address", "category", "customer", "customer_note", "film", "film_actor", "film_category",
    "film_note", "inventory", "language", "note", "payment", "rental", "staff", "store",
)  # fmt: skip
SEQUENCES = (
    ("actor_actor_id_seq", "actor", "actor_id"),
    ("shared_id_seq", "category", "category_id"),
    ("shared_id_seq", "language", "language_id"),
    ("film_film_id_seq", "film", "film_id"),
    ("customer_customer_id_seq", "customer", "customer_id"),
    ("payment_payment_id_seq", "payment", "payment_id"),
    ("rental_rental_id_seq", "rental", "rental_id"),
    ("inventory_inventory_id_seq", "inventory", "inventory_id"),
    ("store_store_id_seq", "store", "store_id"),
    ("staff_staff_id_seq", "staff", "staff_id"),
    ("address_address_id_seq", "address", "address_id"),
)


# A foreign key declared on one partition only (June's, in staging): it constrains the rows that land there.
ONE_PARTITION_REFERENCES = """
CREATE TABLE customer (customer_id int PRIMARY KEY);
CREATE TABLE payment (id int, customer_id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE payment_march PARTITION OF payment FOR VALUES FROM ('2022-03-01') TO ('2022-04-01');
CREATE TABLE payment_june PARTITION OF payment FOR VALUES FROM ('2022-06-01') TO ('2022-07-01');
"""
JUNE_REFERENCES = "ALTER TABLE payment_june ADD CONSTRAINT june_customer FOREIGN KEY (customer_id) REFERENCES customer;"
