"""Rate limiting: the pure algorithms (`algorithms`), the stores that keep their state
(`store` in-process, `redis_store` with its Lua script `decide.lua`), the `Limiter` facade the
gateway and apps call (`limiter`, configured by `settings`), API keys (`keys`, `key_stores`,
`registry`), who a request counts against (`identity`), the ASGI middleware and decorator
(`asgi`) and the `surge keys` command (`commands`)."""
