"""Links resource: request/response schemas, the SQL and side effects, the HTTP controller."""
