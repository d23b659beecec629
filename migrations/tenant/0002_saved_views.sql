-- Atrium tenant migration 0002: saved views of the web application.
--
-- A saved view is a named address of a list page (its filters, sort and
-- search in the query string), kept by one person for themselves or
-- shared with everyone in the organisation. Same rules as 0001: nothing
-- schema-qualified, no types or functions.

CREATE TABLE saved_views (
    id         SERIAL        NOT NULL
                             CONSTRAINT saved_views_pkey PRIMARY KEY,
    name       VARCHAR(100)  NOT NULL
                             CONSTRAINT saved_views_name_check CHECK (btrim(name) <> ''),
    -- The list page the view is of.
    path       VARCHAR(20)   NOT NULL
                             CONSTRAINT saved_views_path_check
                             CHECK (path IN ('/contacts', '/companies', '/deals')),
    -- The page's query string, without `?` and without a page cursor.
    query      VARCHAR(2000) NOT NULL DEFAULT '',
    shared     BOOLEAN       NOT NULL DEFAULT false,
    created_by INTEGER       NOT NULL
                             CONSTRAINT saved_views_created_by_fkey REFERENCES users (id),
    created_at TIMESTAMPTZ   NOT NULL DEFAULT now()
);

-- One person's views of a page have different names (in any case).
CREATE UNIQUE INDEX saved_views_created_by_path_name_key
    ON saved_views (created_by, path, lower(name));
CREATE INDEX idx_saved_views_created_by ON saved_views (created_by);
CREATE INDEX idx_saved_views_path ON saved_views (path) WHERE shared;
