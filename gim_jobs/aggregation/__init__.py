"""RAA-style aggregation for Job_AggregateGIM: hierarchy definitions, SQL generation, parameters."""
