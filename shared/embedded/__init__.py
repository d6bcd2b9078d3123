"""Embedded development infrastructure: a Kafka-compatible broker and a PostgreSQL server, both
shipped as wheels (extra ``embedded``), so the pipeline runs on one machine with nothing else
installed. Production points ``CRYPTOVIZ_KAFKA_BOOTSTRAP`` and ``CRYPTOVIZ_DB_DSN`` elsewhere."""
