-- Atrium control migration 0007: what a trigram comparison costs.
--
-- pg_trgm declares its similarity functions at the default cost of one
-- operator, as cheap as comparing two integers; each really compares two
-- sets of trigrams. With that estimate the planner reads a whole contacts
-- table, comparing every name with every typo variant of a search (a
-- query of two words has a dozen), instead of asking the name's trigram
-- index for each variant. A cost of 100 lets it choose the index.
--
-- Only the owner of pg_trgm's functions may change them (a superuser, in
-- an installation made by a non-superuser owner of the database, where
-- PostgreSQL's bootstrap superuser owns a trusted extension's functions).
-- Without that right the costs stay as they are, searches stay correct,
-- and docs/operations.md says how to apply them by hand.
DO $$
BEGIN
    ALTER FUNCTION extensions.similarity(text, text) COST 100;
    ALTER FUNCTION extensions.similarity_op(text, text) COST 100;
    ALTER FUNCTION extensions.word_similarity(text, text) COST 100;
    ALTER FUNCTION extensions.word_similarity_op(text, text) COST 100;
    ALTER FUNCTION extensions.word_similarity_commutator_op(text, text) COST 100;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm''s function costs are unchanged: only their owner may change them';
END
$$;
