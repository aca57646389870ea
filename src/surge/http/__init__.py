"""HTTP pieces both sides of the proxy share: response heads, chunk framing, hop-by-hop rules,
and the client's flow control as the upstream side drives it. Imports nothing of Surge's, so
`gateway` and `upstreams` may both build on it."""
