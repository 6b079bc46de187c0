"""`shopper rehearse`: drive a running deployment with a traffic profile and measure it."""
