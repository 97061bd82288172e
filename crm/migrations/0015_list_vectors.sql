-- Semantic search reads each probed list's embeddings in one ordered run of
-- index pages instead of one heap page of transcript_segments per segment.
-- A search over all calls ranks about ten lists of about a thousand segments
-- each: fetched through segment_lists from the wide segment rows that is ten
-- thousand heap pages in no order (most outside shared buffers on a large
-- archive); a btree on (list_id, segment_id) that carries the embedding
-- keeps a list's entries side by side (about ten to a page), and an
-- index-only scan reads them with no heap visit. So segment_lists keeps a
-- copy of the embedding (what an index can carry must be a column of its table).

alter table segment_lists add column embedding halfvec(384);
update segment_lists l set embedding = s.embedding from transcript_segments s where s.id = l.segment_id;
-- A filed segment whose embedding was since cleared is no match (the exact scan skips it too).
delete from segment_lists where embedding is null;
alter table segment_lists alter column embedding set not null;

-- Read by a search over every call the viewer may see with no filter. The narrow segment_lists_list
-- stays: a search that joins the segments anyway (an access rule, a filter) reads their embedding
-- there, and scans that index's few pages per list, not this one's hundred.
create index segment_lists_vectors on segment_lists (list_id, segment_id) include (embedding);

create or replace function segment_list_file() returns trigger
language plpgsql as $$
begin
    lock table embedding_lists in row share mode;
    insert into segment_lists (segment_id, list_id, embedding)
    values (new.id, coalesce((select l.id from embedding_lists l
                              order by l.centroid <=> new.embedding limit 1), -1), new.embedding)
    on conflict (segment_id) do update set list_id = excluded.list_id, embedding = excluded.embedding;
    return null;
end
$$;

-- An embedding cleared: the copy goes too, so the lists never rank a stale vector.
create function segment_list_unfile() returns trigger
language plpgsql as $$
begin
    delete from segment_lists where segment_id = new.id;
    return null;
end
$$;

create trigger transcript_segments_unlist after update of embedding on transcript_segments
for each row when (new.embedding is null and old.embedding is not null) execute function segment_list_unfile();
