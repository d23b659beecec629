-- Atrium control migration 0014: trigram comparisons at their measured cost.
--
-- 0007 raised pg_trgm's comparison operators from one operator's cost to
-- 100, enough for the planner to use the name's trigram index on a large
-- table. On a small one (a tenant of 200 contacts) it still read the whole
-- table, comparing every name with each of the search's typo variants:
-- one comparison takes about 3 µs, some 200 times an integer comparison,
-- and a two-word search on 200 contacts spent 10 ms in that scan against
-- 3 ms through the trigram and full-text indexes (a one-word search 1.3 ms
-- against 0.9 ms). At 300 the planner takes the indexes for every search
-- of the contact search benchmark at that size; the results are the same
-- either way (the query orders by rank and id, a total order).
--
-- Only the owner of pg_trgm's functions may change them; without that
-- right the costs stay as they are and searches stay correct.
DO $$
BEGIN
    ALTER FUNCTION extensions.similarity_op(text, text) COST 300;
    ALTER FUNCTION extensions.word_similarity_op(text, text) COST 300;
    ALTER FUNCTION extensions.word_similarity_commutator_op(text, text) COST 300;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm''s function costs are unchanged: only their owner may change them';
END
$$;
