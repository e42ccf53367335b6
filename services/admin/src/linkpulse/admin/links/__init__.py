"""Links resource: request/response schemas, the SQL and side effects, the HTTP controllers, bulk import and export."""
