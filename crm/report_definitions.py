"""What every report figure means: shown on the reports page, in the CLI's JSON and in README."""

from __future__ import annotations

FUNNEL = {
    "dials": "Outbound calls placed (started in the period, in reports.time_zone).",
    "connects": "Outbound calls answered by a person: the call's disposition has the human_answered flag "
    "(answering machines, no answer, busy and invalid numbers are not connects).",
    "connect_rate": "connects / dials.",
    "effective": "Effective conversations: connects where the customer spoke at least "
    "reports.effective_conversation_seconds, measured by the QA voice activity on the customer channel "
    "(qa_results metrics customer_talk_s; the largest over a call's results), not by call length. "
    "A call not yet scored by QA is not counted.",
    "effective_rate": "effective / connects.",
    "intents": "Outbound calls whose disposition has the intent flag (sale, callback, interested).",
    "intent_rate": "intents / connects.",
    "sales": "Outbound calls whose disposition has the sale flag.",
    "conversion_rate": "sales / connects.",
    "revenue": "Total of the orders taken on those sales calls, less orders since cancelled.",
    "active_customers": "Customers active at the start of the period: their first order was placed before it "
    "and they had neither cancelled an order nor been put on the do-not-call list before it.",
    "churned": "Active customers who, in the period, cancelled an order or whose number went on the "
    "do-not-call list (a customer churns once; a later order does not make them active again). "
    "Per agent, team, campaign and source a customer counts under every agent, campaign and source "
    "of their orders.",
    "churn_rate": "churned / active_customers.",
    "handled": "Calls answered by a person (human_answered disposition), inbound and outbound: the calls "
    "handle time is averaged over.",
    "talk_seconds": "Answer to hang-up, summed over the handled calls.",
    "wrap_seconds": "Hang-up to the disposition being saved, summed over the handled calls.",
    "aht_seconds": "Average handle time: (talk_seconds + wrap_seconds) / handled.",
    "pause_seconds": "Time in the paused status (agent_status_log, written by the agent desk). Per agent, "
    "team and period only: pause time belongs to no campaign or source.",
    "ready_seconds": "Time in the ready status, waiting for a call (agent_status_log).",
    "logged_in_seconds": "Time logged in to the desk, in any status: ready, paused, on call, wrap-up "
    "(agent_status_log).",
    "sales_per_hour": "sales / logged-in hours (per agent, team and period; empty per campaign and source).",
}

QUALITY = {
    "qa_results": "QA results of calls started in the period (one per call and scorecard version).",
    "qa_score": "Average overall QA score (0-100) of those results; unscorable calls (no speech) are left out.",
    "qa_categories": "Average score per scorecard category (0-100) over the results where the category applied.",
    "compliance_failed": "Checks of the compliance category that failed, summed over those results.",
    "complaints_opened": "Complaints received in the period (agent: the agent of the complaint's call, else "
    "the user who recorded it).",
    "complaints_resolved": "Of those, the ones resolved (now in state resolved or confirmed by the customer, "
    "or with a resolution time).",
    "complaints_overdue": "Of those, the ones past their resolution due time and not resolved by it.",
    "resolution_hours": "Average hours from receipt to resolution, of the resolved ones.",
    "resolution_vs_due_hours": "Average of resolution time minus due time in hours (negative: early).",
    "survey_answers": "Scored satisfaction survey answers given in the period.",
    "survey_score": "Their average score (0-10).",
    "callbacks_due": "Follow-ups (callbacks) due in the period (agent: the owner, else the creator).",
    "callbacks_kept": "Of those, the ones done.",
    "callbacks_missed": "Of those, the ones marked missed.",
    "callback_kept_rate": "callbacks_kept / (callbacks_kept + callbacks_missed).",
}

COST = {
    "dials": FUNNEL["dials"],
    "connects": FUNNEL["connects"],
    "sales": FUNNEL["sales"],
    "revenue": FUNNEL["revenue"],
    "telephony_minutes": "Talk time of the handled calls in minutes (both directions); calls do not yet record "
    "their trunk, so one rate applies to all.",
    "telephony_cost": "telephony_minutes x reports.trunk_cost_per_minute.",
    "agent_hours": "Handle time in hours: (talk + wrap-up) / 3600. Idle time is not allocated to campaigns.",
    "agent_cost": "agent_hours x reports.agent_hourly_cost.",
    "leads": "Leads added in the period (agent: the lead's owner).",
    "lead_cost": "Each lead's cost: its import's cost_per_lead, else reports.lead_costs for its source "
    "channel, else 0.",
    "total_cost": "telephony_cost + agent_cost + lead_cost.",
    "cost_per_contact": "total_cost / connects.",
    "cost_per_sale": "total_cost / sales.",
    "net_return": "revenue - total_cost.",
    "return_ratio": "revenue / total_cost.",
}

REPORTS = {"funnel": FUNNEL, "quality": QUALITY, "cost": COST}

GROUPINGS = {
    "agent": "the call's agent",
    "team": "the agent's current team",
    "campaign": "the call's campaign",
    "source": "the lead's source channel (else the customer's)",
    "day": "calendar day in reports.time_zone",
    "week": "week starting Monday, clipped to the range",
    "month": "calendar month, clipped to the range",
}
