"""API keys resource: request/response schemas, the service over `linkpulse.db.apikeys`, the HTTP controller."""
