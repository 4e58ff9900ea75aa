"""The service's contract, in one place: the schema of every request and response body and of every socket
frame (pydantic models), which the server validates input with and which the OpenAPI and AsyncAPI documents
are generated from, so that the documents cannot drift from the code."""
