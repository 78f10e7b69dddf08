-- Back to revision 7.4.

DROP INDEX que_core_retrying_idx;
DROP INDEX que_core_expired_idx;
DROP TABLE que_core_throughput;
