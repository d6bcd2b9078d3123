"""cryptoviz-spark: the Spark jobs and the spark-submit wrapper daemon that supervises each."""
