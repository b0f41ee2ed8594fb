-- Demo schema of the example application: two tables, a write function, a SECURITY
-- DEFINER write function, and a read-only role with the writes revoked.
CREATE TABLE iu (id bigserial PRIMARY KEY, doc text NOT NULL, idx int NOT NULL, body text NOT NULL);
CREATE TABLE review_decision (id bigserial PRIMARY KEY, iu_id bigint REFERENCES iu(id), verdict text NOT NULL);
INSERT INTO iu (doc, idx, body) VALUES ('demo', 0, 'First unit.'), ('demo', 1, 'Second unit.'), ('demo', 2, 'Third unit.');
INSERT INTO review_decision (iu_id, verdict) VALUES (1, 'accept');

CREATE FUNCTION fn_iu_create(d text, b text) RETURNS bigint LANGUAGE sql AS
  $$ INSERT INTO iu (doc, idx, body) VALUES (d, 0, b) RETURNING id $$;
CREATE FUNCTION fn_iu_enact(i bigint) RETURNS void LANGUAGE sql SECURITY DEFINER AS
  $$ INSERT INTO review_decision (iu_id, verdict) VALUES (i, 'enacted') $$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fn_iu_create(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fn_iu_enact(bigint) FROM PUBLIC;
CREATE ROLE context_pack_readonly LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS;
GRANT USAGE ON SCHEMA public TO context_pack_readonly;
GRANT SELECT ON iu, review_decision TO context_pack_readonly;
