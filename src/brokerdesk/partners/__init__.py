"""Partners: IB profiles, hierarchy, attribution, commission plans, accruals and payouts."""
