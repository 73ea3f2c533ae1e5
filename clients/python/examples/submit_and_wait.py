"""Submit a job to Visma through visma-hooks and wait for how it ended.

Start the simulator and the service as the README shows (`visma-hooks simulate` and
`visma-hooks serve`), then:

    VISMA_HOOKS_URL=http://127.0.0.1:8000 VISMA_HOOKS_TOKEN=<one of API_TOKENS> \\
        python clients/python/examples/submit_and_wait.py
"""

from __future__ import annotations

import sys

from visma_hooks_client import Client, VismaHooksError


def main() -> int:
    with Client() as client:  # VISMA_HOOKS_URL and VISMA_HOOKS_TOKEN
        try:
            # retry=True: an idempotency key is made up, so a lost answer is retried safely.
            job = client.submit_and_wait(
                "POST", "/v1/customer", {"name": "Acme AS"}, tags={"orderRef": "SO-1"}, retry=True
            )
        except VismaHooksError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
    print(f"job {job.id}: {job.state}", end="")
    if job.created_resource_id:
        print(f", created {job.created_resource_id}", end="")
    print(f" ({job.hint})" if job.hint else "")
    return 0 if job.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
