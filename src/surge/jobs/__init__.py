"""Background jobs: durable queues with retries, dead letters, cron and workers.

    from surge.jobs import Queue
    queue = Queue.from_url("sqlite:///.surge/jobs.db")     # or redis://host:port/db
"""

from surge.jobs.broker import Broker, broker_from_url
from surge.jobs.queue import Job, JobFunction, JobOptions, Queue
from surge.jobs.record import JobRecord
from surge.jobs.states import JobState

__all__ = [
    "Broker", "Job", "JobFunction", "JobOptions", "JobRecord", "JobState", "Queue",
    "broker_from_url",
]
