"""``billing_reconcile``: one workspace's subscription compared with Stripe, overage reported.

Submitted each ``billing_reconcile_interval_seconds`` for every workspace with a subscription
(``jobs/schedules.py``), by hand through ``POST /v1/jobs``, or run at once by
``POST /v1/admin/billing/reconciliation``. Costs no credits. Running it twice is harmless:
a second run finds no drift left and no overage unreported (``billing/reconciliation.py``).
On a server without Stripe it completes with ``{"billing": "not_configured"}``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ...billing.reconciliation import reconcile
from ...billing.stripe_gateway import gateway_for
from ..context import JobContext
from ..registry import InputFiles, JobOutcome

__all__ = ["BillingReconcileInput", "BillingReconcileJob"]


class BillingReconcileInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BillingReconcileJob:
    name = "billing_reconcile"
    input_model: type[BaseModel] = BillingReconcileInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 0

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        if gateway_for(ctx.settings) is None or ctx.pool is None:
            return JobOutcome({"billing": "not_configured"})
        found, overage = await reconcile(
            ctx.pool, ctx.settings, ctx.workspace_id, job_id=ctx.job_id
        )
        await ctx.progress(100)
        return JobOutcome(
            {
                "reconciliation_id": found.id,
                "drift": found.drift,
                "overage_reported_credits": overage.credits,
                "overage_reported_cents": overage.amount_cents,
            }
        )
