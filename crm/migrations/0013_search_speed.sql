-- Semantic search without a pgvector index: inverted lists (IVF) kept in
-- plain tables. The embedded server's pgvector dies with SIGILL on CPUs
-- without AVX-512 when it builds an HNSW or IVFFlat index, but its halfvec
-- distance works everywhere; so the index is ours: k-means centroids of the
-- embeddings (crm/embedding_lists.py trains them with numpy), each embedded
-- segment filed under its nearest centroid, and a search reads only the
-- segments of the few lists nearest the query, exactly re-ranked in SQL.

-- One row per list: its centroid (unit length). Empty until trained.
create table embedding_lists (
    id integer primary key check (id >= 0),
    centroid halfvec(384) not null
);

-- When and on how many embedded segments the lists were trained: a trainer
-- retrains once the archive has grown well past that.
create table embedding_list_training (
    singleton boolean primary key default true check (singleton),
    trained_rows bigint not null,
    lists integer not null,
    trained_at timestamptz not null default now()
);

-- The list of every embedded segment; -1: not filed yet (no lists trained
-- when it was embedded), which every search reads as well, so a segment is
-- never missed for want of a list.
create table segment_lists (
    segment_id bigint primary key references transcript_segments on delete cascade,
    list_id integer not null
);
create index segment_lists_list on segment_lists (list_id, segment_id);

-- File a segment under its nearest list whenever its embedding is written,
-- whoever writes it (the QA worker, a re-score, a bulk load). The ROW SHARE
-- lock makes this wait while a trainer (EXCLUSIVE lock) replaces the lists,
-- and the next statement's snapshot then sees the new centroids: a segment is
-- never filed under a centroid that no longer exists.
create function segment_list_file() returns trigger
language plpgsql as $$
begin
    lock table embedding_lists in row share mode;
    insert into segment_lists (segment_id, list_id)
    values (new.id, coalesce((select l.id from embedding_lists l
                              order by l.centroid <=> new.embedding limit 1), -1))
    on conflict (segment_id) do update set list_id = excluded.list_id;
    return null;
end
$$;

create trigger transcript_segments_list after insert or update of embedding on transcript_segments
for each row when (new.embedding is not null) execute function segment_list_file();

-- Embeddings stored before this migration: not filed until the first training.
insert into segment_lists (segment_id, list_id)
select id, -1 from transcript_segments where embedding is not null;
