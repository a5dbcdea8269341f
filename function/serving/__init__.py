"""The serving function's pieces: routing and responses, errors, model loading, request logs, OpenAPI."""
