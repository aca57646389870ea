"""The process wiring: `surge up`, gateway processes under one master, signals, reload, and where
the admin API, rate limits, scaling and jobs are put together around the data path. The data
path itself (`surge.gateway`) and the pure cores never import this package."""
