"""Plans, subscriptions at Stripe, metered usage and Stripe webhooks."""
