"""Transcript segments as rows: what search finds and the review page shows.

A call's segments come from its latest QA result; storing a newer result
(a rescored call) replaces them, so a search never finds one call twice.
"""

from __future__ import annotations

import unicodedata
import uuid
from functools import cache

import asyncpg


@cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """What substring search compares: NFKC, lower case, traditional Chinese folded to simplified.

    The same function prepares the stored text and the query, so "退貨" finds "退货".
    """
    return _t2s().convert(unicodedata.normalize("NFKC", text).lower())


async def index_result(
    conn: asyncpg.Connection, result_id: int | None, call_id: uuid.UUID | str, transcript: list[dict]
) -> None:
    """Make a stored result's transcript searchable (call inside the transaction that stored it).

    result_id None (the result was already stored) changes nothing.
    """
    if result_id is None:
        return
    call_id = uuid.UUID(str(call_id))
    await conn.execute("delete from transcript_segments where call_id = $1 and result_id <> $2", call_id, result_id)
    rows = [
        (
            call_id,
            result_id,
            seq,
            seg.get("speaker") or "unknown",
            float(seg["start"]),
            float(seg["end"]),
            seg.get("text") or "",
            normalize(seg.get("text") or ""),
            seg.get("confidence"),
        )
        for seq, seg in enumerate(transcript)
    ]
    await conn.executemany(
        """insert into transcript_segments (call_id, result_id, seq, speaker, start_s, end_s, text, norm, confidence)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           on conflict (result_id, seq) do nothing""",
        rows,
    )


async def move_to_result(conn: asyncpg.Connection, call_id: uuid.UUID | str, result_id: int) -> None:
    """A call re-scored from its stored transcript: the same segments (and their embeddings) now belong
    to the new result, so score filters see the new score."""
    await conn.execute("update transcript_segments set result_id = $2 where call_id = $1",
                       uuid.UUID(str(call_id)), result_id)


async def segments_of_call(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """select id, seq, speaker, start_s, end_s, text, confidence from transcript_segments
           where call_id = $1 order by start_s, seq""",
        call_id,
    )


async def set_embedding_index(conn: asyncpg.Connection, wanted: bool) -> None:
    """Create (or drop) the HNSW index semantic search uses, as the setting search.vector_index says.

    Not in the migration: the embedded server's pgvector is built for CPUs
    with AVX-512, and on others building the index or inserting into it ends
    the server with SIGILL; without it semantic search reads the embedding
    lists of crm/embedding_lists.py (halfvec distances work everywhere).
    """
    if wanted:
        await conn.execute(
            """create index if not exists transcript_segments_embedding
               on transcript_segments using hnsw (embedding halfvec_cosine_ops)"""
        )
    else:
        await conn.execute("drop index if exists transcript_segments_embedding")
