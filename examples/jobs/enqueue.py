"""Enqueue the example's jobs, then print what became of them after a few seconds."""

from __future__ import annotations

import asyncio

from tasks import queue, resize_image, send_email


async def main() -> None:
    welcome = await send_email.enqueue("a@example.com", "welcome", _key="welcome:a@example.com")
    again = await send_email.enqueue("a@example.com", "welcome", _key="welcome:a@example.com")
    print(f"idempotent: {welcome.id == again.id}")
    later = await send_email.enqueue("b@example.com", "reminder", _delay="5s")
    broken = await resize_image.enqueue("/missing.png")
    for job in (welcome, later, broken):
        print(f"{job.id}  {job.record.name}  {job.record.state}")
    print(await queue.depth())
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
