"""`shopper demo`: the whole loop on simulated or real traffic, with a report."""
