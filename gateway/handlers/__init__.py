"""Operation handlers, one module per OpenAPI tag. Each handler translates an HTTP
request into one RPC call and the answer back; rules live in the services."""
