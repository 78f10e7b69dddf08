-- Back to revision 7.1.

DROP FUNCTION que_core_next_jobs(bigint[], jsonb, bigint[], text[], integer, integer, bigint[],
                                 integer[], timestamptz[], bigint[]);
