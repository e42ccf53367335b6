"""Stats resource: query windows, response schemas, rollup queries, the HTTP controller."""
