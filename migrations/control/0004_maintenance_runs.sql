-- Atrium control migration 0004: a record of maintenance runs
-- (`atrium maintain`, and the schedule inside `atrium serve`). Servers
-- read the newest row to run the scheduled maintenance once per interval
-- across all of them; the report is what the run did.
CREATE TABLE public.maintenance_runs (
    id          BIGSERIAL   NOT NULL
                            CONSTRAINT maintenance_runs_pkey PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    report      JSONB       NOT NULL
);

CREATE INDEX idx_maintenance_runs_started_at ON public.maintenance_runs (started_at);
